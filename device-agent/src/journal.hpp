// The update journal's steps and the one table of their transitions (docs/agent.md, "Update
// steps, journal and crash safety"). The agent core (update.cpp) runs the step the journal names,
// then moves it as this table says; a restart runs the journalled step again.
#pragma once

#include <optional>
#include <string_view>

namespace ota::agent {

// Journal steps, in order.
enum class Stage { downloading, verifying, preparing, activating, self_restarting, health_checking, committing, rolling_back };
[[nodiscard]] std::string_view to_string(Stage stage);
[[nodiscard]] std::optional<Stage> parse_stage(std::string_view name);

// The `stage` of a status report (docs/protocol.md).
enum class Reported { downloading, verifying, installing, health_checking, succeeded, failed, rolled_back, rejected };
[[nodiscard]] std::string_view to_string(Reported stage);
[[nodiscard]] std::optional<Reported> parse_reported(std::string_view name);

struct Transition {
    Stage stage;
    std::optional<Reported> reported;          // reported when the step begins
    std::optional<Stage> on_success;           // next step (nullopt: the update ends here)
    std::optional<Stage> on_success_self;      // next step for the agent's own update, when different
    Reported final_on_failure;                 // what rolling_back reports when the step fails
    Reported final_on_crash_loop;              // ... when the agent keeps dying in it
    // When the journal cannot be written as the step begins (a full or failing disk): true, go on
    // from memory, since the new version may be live and finishing (health check, commit or
    // rollback) is the way back to one whole version; false, stop with the old version live and
    // report failed. The stored journal then names an earlier step, where a restart resumes.
    bool on_unwritable_journal_go_on;
};

// The row of `stage`. Where a restart in each one resumes:
//   downloading      resume the partial download (Range + If-Range)
//   verifying        hash the staged file again
//   preparing        run prepare again (idempotent; stages only, nothing live changed)
//   activating       run activate again (idempotent given the record)
//   self_restarting  the new agent binary is running: check it, then health-check
//   health_checking  run the health check again
//   committing       run commit again, then report succeeded
//   rolling_back     run rollback again, then report the final status kept in the journal
[[nodiscard]] const Transition& transition(Stage stage);

}  // namespace ota::agent
