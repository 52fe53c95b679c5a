# shellcheck shell=bash
# Step 12, continued: the kubectl-raft plugin's data commands through its own
# port-forward (pods/portforward), from the machine running the suite:
# - `kubectl raft put` then `get` round trip (and exit 1 for a missing key);
# - `kubectl raft watch` sees a put made while it runs;
# - `kubectl raft backup` writes a file that a local `raftctl snapshot inspect` accepts.
# Defines e2e_step_12_plugin_data; e2e_step_12 calls it after e2e_step_12_plugin.
# Uses kraft (12-day2.sh), profile_dir and the helpers of lib.sh.

e2e_step_12_plugin_data() {
  local out code value key dir watch_pid
  value="v-$RANDOM-$SECONDS"
  key="plugin/roundtrip"

  check "kubectl raft put/get ${RC} ${key}: the value written through the port-forward is read back"
  out=$(kraft put "$RC" "$key" "$value" -n "$E2E_NS") || fail "kubectl raft put failed: ${out}"
  [[ $out == OK ]] || fail "kubectl raft put printed '${out}', want OK"
  out=$(kraft get "$RC" "$key" -n "$E2E_NS") || fail "kubectl raft get failed: ${out}"
  [[ $out == "$value" ]] || fail "kubectl raft get printed '${out}', want '${value}'"
  [[ $(kraft get "$RC" "$key" -n "$E2E_NS" -o json | jq -r .value) == "$value" ]] || fail "-o json value differs"
  code=0
  kraft get "$RC" plugin/no-such-key -n "$E2E_NS" >/dev/null 2>&1 || code=$?
  ((code == 1)) || fail "kubectl raft get of a missing key exited ${code}, want 1"
  ok "round trip; missing key exit 1"

  dir=$(mktemp -d)
  check "kubectl raft watch ${RC} plugin/w/ sees a put made while it runs"
  kraft watch "$RC" plugin/w/ -n "$E2E_NS" -o json --count 1 >"${dir}/watch.out" 2>"${dir}/watch.err" &
  watch_pid=$!
  # The watch starts after its port-forward is up (it says so on stderr): write until it
  # has seen one put (a put before it attached is not an event for it).
  wait_for "kubectl raft watch to report a put" 60 eval "
    kraft put '$RC' plugin/w/\$RANDOM x -n '$E2E_NS' >/dev/null;
    ! kill -0 $watch_pid 2>/dev/null" || { kill "$watch_pid" 2>/dev/null; fail "the watch saw no put: $(cat "${dir}/watch.err")"; }
  code=0
  wait "$watch_pid" || code=$?
  ((code == 0)) || fail "kubectl raft watch exited ${code}: $(cat "${dir}/watch.err")"
  grep -q '^watching prefix "plugin/w/" on node ' "${dir}/watch.err" || fail "no start line: $(cat "${dir}/watch.err")"
  [[ $(jq -r '.type + " " + .key' <"${dir}/watch.out") == "PUT plugin/w/"* ]] || fail "watch printed: $(cat "${dir}/watch.out")"
  ok "$(cat "${dir}/watch.out")"

  check "kubectl raft backup ${RC}: a consistent backup that raftctl snapshot inspect accepts"
  kraft backup "$RC" "${dir}/plugin.rkv" -n "$E2E_NS" 2>"${dir}/backup.err" || fail "kubectl raft backup failed: $(cat "${dir}/backup.err")"
  grep -q '^received ' "${dir}/backup.err" || fail "no progress on stderr: $(cat "${dir}/backup.err")"
  [[ ! -e ${dir}/plugin.rkv.part ]] || fail "the .part file was left behind"
  out=$("${CARGO_TARGET_DIR}/$(profile_dir)/raftctl" snapshot inspect "${dir}/plugin.rkv" -o json) ||
    fail "raftctl snapshot inspect refused the backup: ${out}"
  (($(jq -r .keys <<<"$out") >= 2)) || fail "the backup holds $(jq -r .keys <<<"$out") keys: ${out}"
  ok "$(jq -r '"\(.keys) keys at revision \(.revision // "?"), \(.bytes) bytes"' <<<"$out")"
  rm -rf "$dir"
}
