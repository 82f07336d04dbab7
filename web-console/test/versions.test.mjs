import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareVersions, parseVersion } from '../src/versions.mjs';

test('semver orders by SemVer 2.0.0 precedence, build metadata ignored', () => {
  assert.equal(compareVersions('1.4.2', '1.10.0', 'semver'), -1);
  assert.equal(compareVersions('v2.0.0', '2.0.0', 'semver'), 0);
  assert.equal(compareVersions('1.0.0-rc.1', '1.0.0', 'semver'), -1);
  assert.equal(compareVersions('1.0.0-alpha', '1.0.0-alpha.1', 'semver'), -1);
  assert.equal(compareVersions('1.0.0-alpha.beta', '1.0.0-alpha.1', 'semver'), 1);
  assert.equal(compareVersions('1.0.0-rc.2', '1.0.0-rc.10', 'semver'), -1);
  assert.equal(compareVersions('1.0.0+build.5', '1.0.0+build.9', 'semver'), 0);
});

test('semver refuses what version.cpp refuses', () => {
  for (const bad of ['1.2', '01.2.3', '1.2.3-01', '1.2.3-', '1.2.3+', 'x.y.z', '', 'a'.repeat(129)])
    assert.equal(parseVersion(bad, 'semver'), null, bad);
});

test('date orders by day, then the build number of that day', () => {
  assert.equal(compareVersions('2026-03-10', '2026-03-10.2', 'date'), -1);
  assert.equal(compareVersions('2026-03-10.10', '2026-03-10.9', 'date'), 1);
  assert.equal(compareVersions('2025-12-31', '2026-01-01', 'date'), -1);
  assert.equal(parseVersion('2026-02-30', 'date'), null);
  assert.notEqual(parseVersion('2024-02-29', 'date'), null);
  assert.equal(parseVersion('2023-02-29', 'date'), null);
});

test('tags order only within one flavour', () => {
  assert.equal(compareVersions('arm64_2026-03-01', 'arm64_2026-03-02', 'tag'), -1);
  assert.equal(compareVersions('jetson_orin_1.2.0', 'jetson_orin_1.10.0', 'tag'), -1);
  assert.equal(compareVersions('arm64_2026-03-01', 'x86_2026-03-02', 'tag'), null);
  assert.equal(compareVersions('arm64_5', 'arm64_2026-03-02', 'tag'), null);
});

test('integers, also past 2^53, compare exactly; past 2^64 they do not parse', () => {
  assert.equal(compareVersions('9007199254740993', '9007199254740992', 'integer'), 1);
  assert.equal(compareVersions('42', '042', 'integer'), 0);
  assert.equal(parseVersion('18446744073709551616', 'integer'), null);
  assert.notEqual(parseVersion('18446744073709551615', 'integer'), null);
});

test('anything else is incomparable, never an exception', () => {
  for (const [a, b, s] of [[null, '1.0.0', 'semver'], ['1.0.0', 7, 'semver'], ['1.0.0', '1.0.0', 'nope'], [{}, [], 'date']])
    assert.equal(compareVersions(a, b, s), null);
});
