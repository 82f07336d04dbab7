// The web console in a real Chromium against the real stack (console_fixture.hpp): what an
// operator sees and does, checked on the page and on the broker's retained topics.
#include "console_fixture.hpp"

namespace {

// A C++ client of the broker (TLS, the operator's certificate) that notes when a live (not
// retained) message on `topic` first satisfies `match`, in wall-clock milliseconds (the page's
// Date.now() runs on the same clock).
class Watcher {
public:
    Watcher(const kit::Broker& broker, const kit::Pki& pki, const std::string& topic,
            std::function<bool(const json&)> match)
        : match_(std::move(match)) {
        ota::mqtt::Options o;
        o.broker = broker.url();
        o.client_id = "console-test-watcher";
        o.cafile = pki.ca().string();
        o.certfile = pki.cert("operator").string();
        o.keyfile = pki.key("operator").string();
        client_ = std::make_unique<ota::mqtt::Client>(o);
        client_->on_message([this](const ota::mqtt::Message& m) {
            if (m.retained || at_ms_ >= 0) return;
            auto j = json::parse(m.payload, nullptr, false);
            if (j.is_object() && match_(j))
                at_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
        });
        ok_ = client_->connect().has_value() && client_->subscribe(topic, 1).has_value();
    }
    [[nodiscard]] bool ok() const { return ok_; }
    [[nodiscard]] std::int64_t at_ms() const { return at_ms_; }

private:
    std::function<bool(const json&)> match_;
    std::unique_ptr<ota::mqtt::Client> client_;
    std::atomic<std::int64_t> at_ms_{-1};
    bool ok_{false};
};

// In the page: note Date.now() when an element matching `selector` whose text matches `re`
// first appears (a MutationObserver; read back with seen_at()).
std::string observe_js(const std::string& key, const std::string& selector, const std::string& re) {
    return "() => { window.__seen = window.__seen || {}; const key = " + json(key).dump() + ", sel = " +
           json(selector).dump() + ", re = new RegExp(" + json(re).dump() +
           ");"
           " const check = () => { if (window.__seen[key]) return; for (const e of document.querySelectorAll(sel))"
           "   if (re.test(e.textContent)) { window.__seen[key] = Date.now(); return; } };"
           " new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true});"
           " check(); }";
}

}  // namespace

TEST_F(ConsoleTest, LoginWorksAndAWrongPasswordGetsAClearMessage) {
    ASSERT_TRUE(browser->open("p", server->url("")).ok);
    auto form = browser->wait("p", tid("login-form"));
    ASSERT_TRUE(form.ok) << form.error << browser->eval("p", "() => document.body.innerHTML").value.dump();
    shot("login");
    ASSERT_TRUE(browser->fill("p", tid("login-user"), "alice").ok);
    ASSERT_TRUE(browser->fill("p", tid("login-password"), "not-her-password").ok);
    ASSERT_TRUE(browser->click("p", tid("login-submit")).ok);
    auto err = browser->wait("p", tid("login-error"), "wrong user name or password", 10s);
    EXPECT_TRUE(err.ok) << err.error << browser->events("p");
    EXPECT_EQ(browser->count("p", tid("logout")), 0) << "a failed login must not show the console";

    ASSERT_TRUE(login("alice", alice_password));
    auto user = browser->wait("p", tid("user"), "^alice \\(operator\\)$", 10s);
    EXPECT_TRUE(user.ok) << user.error;
    EXPECT_EQ(browser->count("p", tid("login-error")), 0);

    // the session is lost on reload unless "stay logged in" was ticked
    ASSERT_TRUE(browser->reload("p").ok);
    EXPECT_TRUE(browser->wait("p", tid("login-form")).ok) << "reload without 'stay logged in' must ask again";
    ASSERT_TRUE(login("alice", alice_password, true));
    ASSERT_TRUE(browser->reload("p").ok);
    auto again = browser->wait("p", tid("conn-state"), "^connected$", 10s);
    EXPECT_TRUE(again.ok) << again.error;
    // and "log out" forgets it
    ASSERT_TRUE(browser->click("p", tid("logout")).ok);
    ASSERT_TRUE(browser->reload("p").ok);
    EXPECT_TRUE(browser->wait("p", tid("login-form")).ok);
    // no secret in the page's sources: the password appears in none of the served files
    auto src = browser->eval("p", R"(async () => {
        const urls = [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];
        let all = '';
        for (const u of urls) if (!u.includes('/mqtt')) all += await (await fetch(u)).text();
        return all;
    })");
    ASSERT_TRUE(src.ok) << src.error;
    EXPECT_GT(src.value.get<std::string>().size(), 10000u) << "the bundle was not read";
    EXPECT_EQ(src.value.get<std::string>().find(alice_password), std::string::npos);
}

TEST_F(ConsoleTest, AViewerSeesNoActionButtonsItsCraftedRequestIsRefusedAndItReadsTheAuditLog) {
    start_controller(config({{"approval", true}}));
    start_devices();
    publish_release("1.1.0");
    const auto id = rollout_id("1.1.0");
    ASSERT_TRUE(kit::wait_until([&] { return wave_is("canary", id, "waiting_approval") || !rollout_state(id).empty(); }, 15s));

    ASSERT_TRUE(login("victor", victor_password));
    ASSERT_TRUE(browser->wait("p", tid("user"), "^victor \\(viewer\\)$", 10s).ok);
    go("rollout/" + id);
    ASSERT_TRUE(browser->wait("p", tid("rollout-title"), id).ok);
    ASSERT_TRUE(browser->wait("p", tid("wave-bar") + "[data-wave=canary]").ok);
    for (auto a : {"action-approve", "action-pause", "action-resume", "action-retry", "action-abort"})
        EXPECT_EQ(browser->count("p", tid(a)), 0) << a;
    go("devices");
    ASSERT_TRUE(browser->wait("p", tid("device-table")).ok);
    EXPECT_EQ(browser->count("p", tid("device-select")), 0);
    EXPECT_EQ(browser->count("p", tid("action-update-selected")), 0);
    EXPECT_EQ(browser->count("p", tid("action-update-all")), 0);
    go("device/" + dev(3));
    ASSERT_TRUE(browser->wait("p", tid("device-title"), dev(3)).ok);
    EXPECT_EQ(browser->count("p", tid("action-update")), 0);

    // requests crafted through the page's own client: refused by the broker (MQTT 5 reason 135)
    for (const std::string user : {"victor", "alice", "operator"}) {
        auto r = browser->eval("p", "() => window.otaConsole.publish('ota/v1/control/request/" + user +
                                        "', {id: 'x', cmd: 'approve', rollout: '" + id +
                                        "', reply_to: 'ota/v1/control/reply/x'}).then(() => 'accepted', (e) => 'refused ' + e.code)");
        ASSERT_TRUE(r.ok) << r.error;
        EXPECT_EQ(r.value, "refused 135") << "as " << user;
    }
    // On its query topic the broker lets the viewer through, and the controller answers only
    // what changes nothing: approve there is refused with read_only and not carried out.
    auto q = browser->eval("p", "() => window.otaConsole.request('approve', {rollout: '" + id +
                                    "'}, 'ota/v1/control/query/victor').then((r) => r, (e) => ({refused: e.code}))");
    ASSERT_TRUE(q.ok) << q.error;
    EXPECT_EQ(q.value.value("ok", true), false) << q.value.dump();
    EXPECT_EQ(q.value["error"].value("code", ""), "read_only") << q.value.dump();
    // History reads the audit log through that topic: the rollout's creation by the controller.
    go("history");
    auto created = browser->wait("p", tid("audit-row") + "[data-action=created]", "", 10s);
    EXPECT_TRUE(created.ok) << created.error;
    EXPECT_EQ(browser->count("p", tid("audit-error")), 0);
    // and the controller did nothing
    std::this_thread::sleep_for(1s);  // a request that got through would be handled within ms
    auto status = ctl_json({"status", id});
    EXPECT_EQ(status["waves"][0]["state"], "waiting_approval") << status.dump();
    for (const auto& a : ctl_json({"audit", "--limit", "100"})) EXPECT_NE(a.value("action", ""), "approved") << a.dump();
}

TEST_F(ConsoleTest, APublishedReleaseAppearsAndWaveProgressMovesLive) {
    start_controller(config({{"soak_s", 4}}));
    start_devices();
    ASSERT_TRUE(login("alice", alice_password));
    ASSERT_TRUE(wait_count("unknown", fleet_size, 15s));  // no release yet: nothing to compare with
    EXPECT_EQ(browser->eval("p", "() => { window.__mark = 'same page'; return 1; }").value, 1);

    publish_release("1.1.0");
    const auto id = rollout_id("1.1.0");
    auto rel = browser->wait("p", tid("release-row") + "[data-component=app] " + tid("release-version"), "1\\.1\\.0", 10s);
    EXPECT_TRUE(rel.ok) << rel.error;
    EXPECT_TRUE(wait_count("outdated", fleet_size - 2, 15s) || wait_count("outdated", fleet_size, 1s));
    shot("fleet");

    go("rollouts");
    ASSERT_TRUE(browser->wait("p", tid("rollout-row") + "[data-rollout-id='" + id + "']", "", 10s).ok);
    go("rollout/" + id);
    // the canary's counts move as the devices report, then its soak is counted down while the
    // next waves wait
    auto canary_done = browser->wait("p", wave_count("canary", "succeeded"), "succeeded 2", 20s);
    ASSERT_TRUE(canary_done.ok) << canary_done.error << ctl({"status", id}).out;
    auto soak = browser->wait("p", tid("wave-bar") + "[data-wave=canary] " + tid("wave-note"), "soak ends in", 5s);
    EXPECT_TRUE(soak.ok) << soak.error;
    EXPECT_EQ(browser->text("p", wave_count("early", "succeeded")).value, "succeeded 0");
    shot("rollout");
    auto early = browser->wait("p", wave_count("early", "succeeded"), "succeeded 4", 30s);
    EXPECT_TRUE(early.ok) << early.error;
    auto broad = browser->wait("p", wave_count("broad", "succeeded"), "succeeded 6", 30s);
    EXPECT_TRUE(broad.ok) << broad.error;
    EXPECT_TRUE(browser->wait("p", tid("rollout-view") + " " + tid("rollout-state"), "completed", 15s).ok);
    EXPECT_EQ(rollout_state(id), "completed");
    auto done = browser->wait("p", tid("toast"), "completed", 5s);
    EXPECT_TRUE(done.ok) << done.error;

    go("fleet");
    EXPECT_TRUE(wait_count("up_to_date", fleet_size, 10s));
    EXPECT_EQ(browser->text("p", tid("badge-outdated")).value, "0");
    go("rollouts");
    ASSERT_TRUE(browser->wait("p", tid("rollout-row") + "[data-state=completed]").ok);
    shot("rollouts");
    go("devices");
    ASSERT_TRUE(browser->wait("p", tid("device-row") + "[data-device-id=" + dev(3) + "]").ok);
    shot("devices");
    go("device/" + dev(3));
    auto stage = browser->wait("p", tid("device-history") + " " + tid("history-row"), "", 5s);
    EXPECT_TRUE(stage.ok) << "the device view shows the stages seen live: " << stage.error;
    EXPECT_NE(browser->text("p", tid("device-labels")).value.get<std::string>().find("ring"), std::string::npos);
    shot("device");
    // all of it without a reload
    EXPECT_EQ(browser->eval("p", "() => window.__mark").value, "same page");
}

TEST_F(ConsoleTest, AFailingCanaryShowsTheHaltTheAlertBadgeAndAToastWithinOneSecond) {
    start_controller(config({{"max_failures", 1}}));
    start_devices("1.2.0");
    const auto id = rollout_id("1.2.0");
    Watcher halted(*broker, pki, "ota/v1/rollouts/" + id, [](const json& j) { return j.value("state", "") == "halted"; });
    ASSERT_TRUE(halted.ok());
    ASSERT_TRUE(login("alice", alice_password));
    ASSERT_TRUE(browser->eval("p", observe_js("toast", "[data-testid=toast]", "halted")).ok);
    ASSERT_TRUE(browser->eval("p", observe_js("badge", "[data-testid=badge-alerts]", "^\\s*1\\s*$")).ok);
    EXPECT_EQ(browser->text("p", tid("badge-alerts")).value, "0");

    publish_release("1.2.0");
    ASSERT_TRUE(kit::wait_until([&] { return halted.at_ms() >= 0; }, 30s)) << ctl({"status", id}).out;
    json seen;
    ASSERT_TRUE(kit::wait_until([&] {
        seen = browser->eval("p", "() => window.__seen").value;
        return seen.is_object() && seen.contains("toast") && seen.contains("badge");
    }, 5s)) << seen.dump();
    const auto toast_ms = seen["toast"].get<std::int64_t>() - halted.at_ms();
    const auto badge_ms = seen["badge"].get<std::int64_t>() - halted.at_ms();
    std::cout << "halted -> toast " << toast_ms << " ms, alert badge " << badge_ms << " ms\n";
    EXPECT_LE(toast_ms, 1000);
    EXPECT_LE(badge_ms, 1000);

    go("rollouts");
    ASSERT_TRUE(browser->wait("p", tid("rollout-row") + "[data-state=halted] " + tid("rollout-alert")).ok);
    go("rollout/" + id);
    auto reason = browser->wait("p", tid("rollout-reason"), "^halted: .*failed.*max_failures", 5s);
    EXPECT_TRUE(reason.ok) << reason.error;
    auto failed = browser->wait("p", wave_count("canary", "failed"), "failed [12]", 5s);
    EXPECT_TRUE(failed.ok) << failed.error;
    auto alert = browser->wait("p", tid("rollout-alert-state") + "[data-state=firing]", "on wave canary");
    EXPECT_TRUE(alert.ok) << alert.error;
    shot("halted");
    EXPECT_EQ(browser->text("p", wave_count("early", "in_progress")).value, "in progress 0");
    go("device/" + dev(1));
    auto error = browser->wait("p", tid("device-error"), "health_check_failed", 10s);
    EXPECT_TRUE(error.ok) << error.error;
}

TEST_F(ConsoleTest, ApproveOpensTheGatedWaveAndTheAuditShowsTheLoggedInUser) {
    start_controller(config({}, {{"approval", true}}));
    start_devices();
    ASSERT_TRUE(login("alice", alice_password));
    publish_release("1.1.0");
    const auto id = rollout_id("1.1.0");
    go("rollouts");
    auto needs = browser->wait("p", tid("rollout-row") + "[data-rollout-id='" + id + "'] " + tid("rollout-needs-approval"), "", 30s);
    ASSERT_TRUE(needs.ok) << needs.error << ctl({"status", id}).out;
    go("rollout/" + id);
    ASSERT_TRUE(browser->wait("p", tid("wave-bar") + "[data-wave=early] " + tid("wave-note"), "waiting for approval").ok);
    EXPECT_FALSE(wave_is("early", id, "open"));

    ASSERT_TRUE(browser->click("p", tid("action-approve")).ok);
    auto reply = browser->wait("p", tid("reply") + "[data-ok=true]", "approve", 10s);
    EXPECT_TRUE(reply.ok) << reply.error;
    ASSERT_TRUE(kit::wait_until([&] { return wave_is("early", id, "open"); }, 10s)) << ctl({"status", id}).out;
    EXPECT_TRUE(browser->wait("p", wave_count("early", "succeeded"), "succeeded 4", 30s).ok);

    go("history");
    auto row = browser->wait("p", tid("audit-row") + "[data-action=approved]", "", 10s);
    ASSERT_TRUE(row.ok) << row.error;
    EXPECT_EQ(browser->text("p", tid("audit-row") + "[data-action=approved] " + tid("audit-actor")).value, "alice");
    // the controller's own record says the same
    bool audited = false;
    for (const auto& a : ctl_json({"audit", "--limit", "100"}))
        audited = audited || (a.value("action", "") == "approved" && a.value("actor", "") == "alice");
    EXPECT_TRUE(audited);
    ASSERT_TRUE(kit::wait_until([&] { return rollout_state(id) == "completed"; }, 60s));
    ASSERT_TRUE(browser->click("p", tid("audit-refresh")).ok);
    auto fin = browser->wait("p", tid("finished-row") + "[data-rollout-id='" + id + "'] " + tid("success-rate"), "100", 10s);
    EXPECT_TRUE(fin.ok) << fin.error;
    shot("history");
}

TEST_F(ConsoleTest, AbortAndRetryWorkFromThePageAndTheirRepliesAreShown) {
    start_controller(config({{"max_failures", 1}}));
    start_devices("1.2.0");
    ASSERT_TRUE(login("alice", alice_password));
    publish_release("1.2.0");
    const auto id = rollout_id("1.2.0");
    go("rollout/" + id);
    ASSERT_TRUE(browser->wait("p", tid("rollout-view") + " " + tid("rollout-state"), "halted", 30s).ok);

    // retry asks first; Cancel sends nothing
    ASSERT_TRUE(browser->click("p", tid("action-retry")).ok);
    ASSERT_TRUE(browser->wait("p", tid("confirm-dialog"), "Retry").ok);
    ASSERT_TRUE(browser->click("p", tid("confirm-no")).ok);
    EXPECT_EQ(browser->count("p", tid("reply") + "[data-ok=true], " + tid("reply") + "[data-ok=false]"), 0) << "Cancel sent a request";
    ASSERT_TRUE(browser->click("p", tid("action-retry")).ok);
    ASSERT_TRUE(browser->click("p", tid("confirm-yes")).ok);
    auto retried = browser->wait("p", tid("reply") + "[data-ok=true]", "^retry.*ok", 10s);
    EXPECT_TRUE(retried.ok) << retried.error;

    // the canary fails again (the sims fail 1.2.0 every time) and halts; abort it
    ASSERT_TRUE(browser->wait("p", tid("rollout-view") + " " + tid("rollout-state"), "halted", 30s).ok);
    ASSERT_TRUE(browser->click("p", tid("action-abort")).ok);
    ASSERT_TRUE(browser->wait("p", tid("confirm-dialog"), "Abort").ok);
    ASSERT_TRUE(browser->click("p", tid("confirm-yes")).ok);
    auto aborted = browser->wait("p", tid("reply") + "[data-ok=true]", "^abort.*ok", 10s);
    EXPECT_TRUE(aborted.ok) << aborted.error;
    EXPECT_TRUE(browser->wait("p", tid("rollout-view") + " " + tid("rollout-state"), "aborted", 10s).ok);
    EXPECT_TRUE(kit::wait_until([&] { return rollout_state(id) == "aborted"; }, 10s));

    // a refusal shows the controller's code and message
    ASSERT_TRUE(browser->click("p", tid("action-pause")).ok);
    auto refused = browser->wait("p", tid("reply") + "[data-ok=false]", "^pause.*state_conflict", 10s);
    EXPECT_TRUE(refused.ok) << refused.error;

    std::set<std::string> actions;
    for (const auto& a : ctl_json({"audit", "--limit", "100"}))
        if (a.value("actor", "") == "alice") actions.insert(a.value("action", ""));
    EXPECT_TRUE(actions.contains("retried") && actions.contains("aborted"));
}

TEST_F(ConsoleTest, BrokerAndWebsockifyRestartsAreRecoveredWithoutAReloadAndWithoutStaleCounts) {
    start_controller(config());
    start_devices();
    ASSERT_TRUE(login("alice", alice_password));
    ASSERT_TRUE(wait_count("unknown", fleet_size, 15s));
    ASSERT_EQ(browser->eval("p", "() => { window.__mark = 'same page'; return 1; }").value, 1);

    // websockify goes away: the page says so; meanwhile a release is rolled out to every device
    websockify->stop();
    auto lost = browser->wait("p", tid("conn-state"), "^reconnecting", 10s);
    EXPECT_TRUE(lost.ok) << lost.error;
    EXPECT_EQ(browser->count("p", tid("action-abort") + ":enabled"), 0);
    publish_release("1.1.0");
    const auto id = rollout_id("1.1.0");
    ASSERT_TRUE(kit::wait_until([&] { return rollout_state(id) == "completed"; }, 60s)) << ctl({"status", id}).out;
    EXPECT_EQ(fleet_counts()["outdated"], 0) << "nothing new can have arrived";
    websockify->start();
    auto back = browser->wait("p", tid("conn-state"), "^connected$", 30s);
    ASSERT_TRUE(back.ok) << back.error;
    EXPECT_TRUE(wait_count("up_to_date", fleet_size, 10s)) << "the retained state taken afresh after the reconnect";
    go("rollouts");
    EXPECT_TRUE(browser->wait("p", tid("rollout-row") + "[data-rollout-id='" + id + "'][data-state=completed]", "", 10s).ok);

    // the broker restarts: the same, and the counts are not doubled by the retained state sent again
    broker->restart();
    auto lost2 = browser->wait("p", tid("conn-state"), "^reconnecting|^connected$", 10s);
    EXPECT_TRUE(lost2.ok) << lost2.error;
    auto back2 = browser->wait("p", tid("conn-state"), "^connected$", 40s);
    ASSERT_TRUE(back2.ok) << back2.error;
    go("fleet");
    EXPECT_TRUE(wait_count("up_to_date", fleet_size, 20s));
    // and it is live again: the next release moves on the page
    publish_release("1.3.0");
    go("rollout/" + rollout_id("1.3.0"));
    auto live = browser->wait("p", wave_count("broad", "succeeded"), "succeeded 6", 60s);
    EXPECT_TRUE(live.ok) << live.error;
    EXPECT_EQ(browser->eval("p", "() => window.__mark").value, "same page");
    auto pe = browser->events("p");
    EXPECT_EQ(pe.find("pageerror"), std::string::npos) << pe;
}

TEST_F(ConsoleTest, StringsFromDevicesAreRenderedAsText) {
    start_controller(config());
    const std::string xss = "<img src=x onerror=\"window.__xss=(window.__xss||0)+1\">";
    start_devices("", {"--label", "note=" + xss});
    ASSERT_TRUE(login("alice", alice_password));
    ASSERT_TRUE(browser->eval("p", "() => { window.alert = () => { window.__xss = 99; }; return 1; }").ok);
    // a device's own topics carry what it likes: a label, an error code and message, a version
    const std::string d = dev(1);
    auto inv = kit::mosquitto_pub(*broker, pki, d, "ota/v1/devices/" + d + "/inventory",
                                  json{{"platform", xss}, {"agent_version", xss}, {"labels", {{"site", "plant"}, {xss, xss}}},
                                       {"components", {{"app", "1.0.0"}, {"x<svg onload=alert(1)>", xss}}}}
                                      .dump(),
                                  true);
    ASSERT_EQ(inv.exit_code, 0) << inv.err;
    auto st = kit::mosquitto_pub(*broker, pki, d, "ota/v1/devices/" + d + "/status/app",
                                 json{{"seq", 1}, {"ts", "2026-12-03T00:00:00Z"}, {"rollout", xss}, {"version", xss},
                                      {"stage", "failed"}, {"error", {{"code", xss}, {"message", xss + "<script>window.__xss=7</script>"}}}}
                                     .dump(),
                                 true);
    ASSERT_EQ(st.exit_code, 0) << st.err;
    go("device/" + d);
    auto err = browser->wait("p", tid("device-error"), "<img src=x", 10s);
    EXPECT_TRUE(err.ok) << err.error << " (the error message is shown, as text)";
    EXPECT_TRUE(browser->wait("p", tid("device-labels"), "<img src=x", 5s).ok);
    for (const std::string& v : std::vector<std::string>{"devices", "fleet", "rollouts", "history", "policy", "device/" + d}) {
        go(v);
        std::this_thread::sleep_for(300ms);  // let any injected handler fire
    }
    go("devices");
    ASSERT_TRUE(browser->wait("p", tid("device-table")).ok);
    auto r = browser->eval("p", R"(() => ({xss: window.__xss || 0,
        injected: document.querySelectorAll('img, svg, script:not([src]), iframe, object, embed').length}))");
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.value["xss"], 0) << "a device's string ran as code";
    EXPECT_EQ(r.value["injected"], 0) << "a device's string became an element";
    auto pe = browser->events("p");
    EXPECT_EQ(pe.find("dialog"), std::string::npos) << pe;
}

TEST_F(ConsoleTest, AMaintenanceWindowCreatedOnThePageHoldsTheNextWaveAndSurvivesARestart) {
    const auto cfg = config();
    start_controller(cfg);
    start_devices();
    ASSERT_TRUE(login("alice", alice_password));
    go("policy");
    const std::string form = tid("window-form") + "[data-wave=early] ";
    ASSERT_TRUE(browser->wait("p", form + tid("window-start"), "", 15s).ok);
    // a window that opens in two hours (UTC): the early wave must wait for it
    auto hhmm = [](std::chrono::system_clock::time_point t) {
        const auto day = std::chrono::floor<std::chrono::days>(t);
        const auto m = std::chrono::duration_cast<std::chrono::minutes>(t - day).count();
        char b[16];
        std::snprintf(b, sizeof b, "%02d:%02d", static_cast<int>(m / 60), static_cast<int>(m % 60));
        return std::string(b);
    };
    const auto now = std::chrono::system_clock::now();
    const auto start = hhmm(now + 2h), end = hhmm(now + 3h);
    ASSERT_TRUE(browser->fill("p", form + tid("window-start"), start).ok);
    ASSERT_TRUE(browser->fill("p", form + tid("window-end"), end).ok);
    ASSERT_TRUE(browser->click("p", form + tid("window-save")).ok);
    auto saved = browser->wait("p", tid("reply") + "[data-ok=true]", "window_set.*ok", 10s);
    ASSERT_TRUE(saved.ok) << saved.error;
    auto shown = browser->wait("p", tid("policy-wave-row") + "[data-wave=early] " + tid("policy-window"), start, 10s);
    EXPECT_TRUE(shown.ok) << shown.error;
    auto policy = retained("ota/v1/fleets/plant/policy").value_or(json{});
    EXPECT_EQ(policy["waves"][1]["overrides"]["window"]["set_by"], "alice") << policy.dump();
    shot("policy");

    publish_release("1.1.0");
    const auto id = rollout_id("1.1.0");
    go("rollout/" + id);
    auto held = browser->wait("p", tid("wave-bar") + "[data-wave=early] " + tid("wave-note"), "waiting for maintenance window", 30s);
    ASSERT_TRUE(held.ok) << held.error << ctl({"status", id}).out;
    EXPECT_FALSE(wave_is("early", id, "open"));

    // the controller restarts: the window still holds the wave (SQLite, not the page)
    ASSERT_EQ(controller->stop(), 0);
    start_controller(cfg);
    ASSERT_TRUE(kit::wait_until([&] { return ctl_json({"status", id})["waves"][1].value("state", "") == "waiting_window"; }, 15s))
        << ctl({"status", id}).out;
    std::this_thread::sleep_for(1s);  // the controller's first ticks after the restart
    EXPECT_FALSE(wave_is("early", id, "open"));
    EXPECT_TRUE(browser->wait("p", tid("wave-bar") + "[data-wave=early] " + tid("wave-note"), "waiting for maintenance window").ok);

    // deleting it on the page lets the wave open at once
    go("policy");
    ASSERT_TRUE(browser->click("p", form + tid("window-delete")).ok);
    ASSERT_TRUE(browser->click("p", tid("confirm-yes")).ok);
    auto deleted = browser->wait("p", tid("reply") + "[data-ok=true]", "window_delete.*ok", 10s);
    EXPECT_TRUE(deleted.ok) << deleted.error;
    ASSERT_TRUE(kit::wait_until([&] { return wave_is("early", id, "open"); }, 15s)) << ctl({"status", id}).out;
    bool audited = false;
    for (const auto& a : ctl_json({"audit", "--limit", "100"}))
        audited = audited || (a.value("action", "") == "window_delete" && a.value("actor", "") == "alice");
    EXPECT_TRUE(audited);
}

// While the retained state of the fleet still arrives, the counts come from the controller's
// summary (one retained message, subscribed first): the page never shows half-loaded counts of
// its own, and the summary's numbers are the ones the page then counts itself.
TEST_F(ConsoleTest, WhileTheFleetLoadsTheCountsComeFromTheControllersSummary) {
    start_controller(config({}));
    start_devices();
    publish_release("1.1.0");
    const auto id = rollout_id("1.1.0");
    ASSERT_TRUE(kit::wait_until([&] { return rollout_state(id) == "completed"; }, 60s)) << ctl({"status", id}).out;
    // The controller publishes the summary retained (its ACL lets it) within its interval.
    json summary;
    ASSERT_TRUE(kit::wait_until([&] {
        summary = retained("ota/v1/summary").value_or(json{});
        return summary.is_object() && summary["components"]["app"].value("up_to_date", -1) == fleet_size;
    }, 15s)) << summary.dump();
    EXPECT_EQ(summary["devices"], fleet_size);
    EXPECT_EQ(summary["needs_update"], 0);
    EXPECT_EQ(summary["fleets"]["plant"]["components"]["app"], summary["components"]["app"]);

    // Every state of the counts table from the click on, in order.
    ASSERT_TRUE(browser->open("p", server->url("")).ok);
    ASSERT_EQ(browser->eval("p", R"(() => {
        window.__seen = [];
        const snap = () => {
          const t = document.querySelector('[data-testid=fleet-counts]');
          if (!t) return;
          const c = {};
          for (const e of t.querySelectorAll('[data-testid=fleet-count][data-component=app]')) c[e.dataset.state] = Number(e.textContent.trim());
          const note = document.querySelector('[data-testid=counts-source]');
          const s = JSON.stringify({ source: t.dataset.source, c, note: note ? note.textContent : '' });
          if (window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s);
        };
        new MutationObserver(snap).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
        return 1;
      })").value, 1);
    ASSERT_TRUE(browser->fill("p", tid("login-user"), "alice").ok);
    ASSERT_TRUE(browser->fill("p", tid("login-password"), alice_password).ok);
    ASSERT_TRUE(browser->click("p", tid("login-submit")).ok);
    ASSERT_TRUE(browser->wait("p", tid("fleet-counts") + "[data-source=live]", "", 15s).ok);
    const auto seen = browser->eval("p", "() => window.__seen").value;
    ASSERT_TRUE(seen.is_array() && !seen.empty()) << seen.dump();
    const auto first = json::parse(seen.front().get<std::string>());
    EXPECT_EQ(first["source"], "summary") << seen.dump(2);
    EXPECT_EQ(first["c"]["up_to_date"], fleet_size) << seen.dump(2);
    EXPECT_NE(first["note"].get<std::string>().find("of " + std::to_string(fleet_size) + ")"), std::string::npos)
        << first.dump();
    for (const auto& s : seen) {
        const auto e = json::parse(s.get<std::string>());
        // no half-loaded counts: whichever source, the counts shown are the whole fleet's
        EXPECT_EQ(e["c"]["up_to_date"], fleet_size) << seen.dump(2);
    }
    EXPECT_EQ(json::parse(seen.back().get<std::string>())["source"], "live") << seen.dump(2);
    EXPECT_TRUE(wait_count("up_to_date", fleet_size, 1s));
    EXPECT_EQ(browser->text("p", tid("badge-outdated")).value, "0");
}
