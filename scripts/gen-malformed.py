#!/usr/bin/env python3
"""Writes the malformed-input corpus under tests/fixtures/malformed/<class>/.

Every file is one valid drill (BASE) broken in one way, or raw bytes that are not a drill at
all. Files over 100 KiB are not written here: tests/malformed.rs generates those at run time.
Rerun after changing a case; the output is deterministic, and stale files are removed.

    python3 scripts/gen-malformed.py
"""

import os
import shutil
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "malformed")

BASE = """\
name: corpus-base
description: a valid drill that each corpus file breaks in one place
schedule: "0 10 * * MON-FRI"
targets:
  web-pods:
    kubernetes:
      namespace: shop
      selector: app=web
      count: 1
  worker:
    process:
      pid-file: /run/worker.pid
probes:
  web-http:
    http:
      url: "http://127.0.0.1:8080/healthz"
      method: GET
      expect-status: 200
      timeout: 500ms
      max-latency: 300ms
    every: 100ms
    every-during: 50ms
  db-port:
    tcp:
      address: "127.0.0.1:5432"
      timeout: 1s
  smoke:
    command:
      run: ["true"]
  web-ready:
    kubernetes:
      deployment: shop/web
      ready: all
steady-state: [web-http, db-port]
faults:
  - pod-kill:
      target: web-pods
      grace-period: 0s
  - process-kill:
      target: worker
      signal: SIGTERM
  - command:
      run: ["true"]
      timeout: 30s
recovery:
  objective: 30s
  stable-for: 3s
  timeout: 5m
  probes: [web-http]
abort-when:
  - probe: web-http
    failing-for: 2m
repeat: 1
cooldown: 5s
"""

ENV_BASE = """\
environments:
  local:
    vars: { web_url: "http://127.0.0.1:8080" }
  staging:
    kube-context: staging-admin
    time-zone: Europe/Berlin
    vars:
      web_url: "https://web.staging.example"
  production:
    kube-context: prod
    protected: true
    promote-from: staging
    within: 7d
"""

SCENARIO_BASE = """\
kubelet:
  schedule-delay: 20ms
  start-delay: 100ms..300ms
  ready-delay: 300ms
  termination-grace: 1s
endpoints:
  propagation-delay: 100ms
namespaces:
  shop:
    labels: { firedrill.io/allow: "true" }
    deployments:
      web: { replicas: 3, labels: { app: web }, http: true }
    statefulsets:
      db: { replicas: 2, labels: { app: db } }
"""

corpus = {}


def add(cls, name, content):
    """One file: `content` is text (written as UTF-8) or bytes (written as is)."""
    files = corpus.setdefault(cls, {})
    assert name not in files, f"{cls}/{name} twice"
    data = content.encode("utf-8") if isinstance(content, str) else content
    assert len(data) <= 100 * 1024, f"{cls}/{name} is over 100 KiB; generate it in the test"
    files[name] = data


def sub(old, new, base=BASE):
    """BASE with the one occurrence of `old` replaced by `new`."""
    assert base.count(old) == 1, f"{old!r} occurs {base.count(old)} times"
    return base.replace(old, new)


def subs(base, *pairs):
    for old, new in pairs:
        base = sub(old, new, base)
    return base


def field(value_of, values, cls, prefix):
    """One file per value: `value_of(v)` gives the (old, new) line replacement."""
    for i, v in enumerate(values):
        old, new = value_of(v)
        add(cls, f"{prefix}-{i:02d}", sub(old, new))


# Every duration setting of BASE, as the line that sets it.
DURATIONS = {
    "http-timeout": "      timeout: 500ms\n",
    "max-latency": "      max-latency: 300ms\n",
    "every": "    every: 100ms\n",
    "every-during": "    every-during: 50ms\n",
    "tcp-timeout": "      timeout: 1s\n",
    "grace-period": "      grace-period: 0s\n",
    "command-timeout": "      timeout: 30s\n",
    "objective": "  objective: 30s\n",
    "stable-for": "  stable-for: 3s\n",
    "recovery-timeout": "  timeout: 5m\n",
    "failing-for": "    failing-for: 2m\n",
    "cooldown": "cooldown: 5s\n",
}


def set_duration(key, value):
    line = DURATIONS[key]
    indent = line[: len(line) - len(line.lstrip())]
    k = line.strip().split(":")[0]
    return sub(line, f"{indent}{k}: {value}\n")


def yaml_syntax():
    c = "yaml-syntax"
    add(c, "unclosed-flow-map", sub("{ web_url", "{ web_url", ENV_BASE).replace('8080" }', '8080"'))
    add(c, "unclosed-flow-seq", sub("steady-state: [web-http, db-port]", "steady-state: [web-http, db-port"))
    add(c, "unclosed-double-quote", sub('url: "http://127.0.0.1:8080/healthz"', 'url: "http://127.0.0.1:8080/healthz'))
    add(c, "unclosed-single-quote", sub('address: "127.0.0.1:5432"', "address: '127.0.0.1:5432"))
    add(c, "stray-close-bracket", sub("repeat: 1\n", "repeat: 1]\n"))
    add(c, "stray-close-brace", sub("cooldown: 5s\n", "cooldown: 5s }\n"))
    add(c, "mapping-value-in-plain", sub("name: corpus-base", "name: corpus: base"))
    add(c, "key-dedented-in-block", sub("      method: GET\n", "     method: GET\n"))
    add(c, "key-overindented", sub("    every: 100ms\n", "       every: 100ms\n"))
    add(c, "sequence-in-mapping", sub("repeat: 1\n", "- repeat: 1\n"))
    add(c, "mapping-after-sequence", sub("  - command:\n", "  command:\n"))
    add(c, "reserved-at-sign", sub("name: corpus-base", "name: @corpus"))
    add(c, "reserved-backtick", sub("name: corpus-base", "name: `corpus`"))
    add(c, "two-documents", BASE + "---\n" + BASE)
    add(c, "document-end-then-content", BASE + "...\nname: again\n")
    add(c, "bad-escape", sub('url: "http://127.0.0.1:8080/healthz"', 'url: "http://127.0.0.1:8080/\\q"'))
    add(c, "flow-map-missing-comma", sub("steady-state: [web-http, db-port]", "steady-state: {a: 1 b: 2}"))
    add(c, "complex-key", sub("repeat: 1\n", "? [a, b]\n: 1\n"))
    add(c, "flow-map-key", sub("repeat: 1\n", "{a: 1}: 2\n"))
    add(c, "directive-without-document", "%YAML 1.2\n" + BASE)
    add(c, "block-scalar-bad-indicator", sub("description: a valid", "description: |x\n  a valid"))
    add(c, "truncated-mid-flow", BASE.split("steady-state:")[0] + "steady-state: [web-http, ")
    add(c, "truncated-mid-quote", BASE.split("127.0.0.1:8080")[0])
    add(c, "undefined-tag-handle", sub("repeat: 1\n", "repeat: !e!int 1\n"))
    add(c, "colon-without-space-flow", sub("steady-state: [web-http, db-port]", "steady-state: {a:1, :}"))


def tabs():
    c = "tabs"
    add(c, "tab-indents-top-child", sub("  web-pods:\n", "\tweb-pods:\n"))
    add(c, "tab-indents-probe", sub("    every: 100ms\n", "\tevery: 100ms\n"))
    add(c, "tab-after-spaces", sub("      method: GET\n", "    \t  method: GET\n"))
    add(c, "tab-indents-list-item", sub("  - pod-kill:\n", "\t- pod-kill:\n"))
    add(c, "tab-indents-recovery", sub("  objective: 30s\n", "\tobjective: 30s\n"))
    add(c, "tabs-everywhere", BASE.replace("  ", "\t"))
    add(c, "tab-indents-abort", sub("    failing-for: 2m\n", "\t\tfailing-for: 2m\n"))
    add(c, "tab-in-sequence-indent", sub("  - process-kill:\n", "  -\tprocess-kill:\n\ttarget: worker\n"))
    add(c, "tab-indents-first-line", "\t" + BASE)
    add(c, "env-tab", ENV_BASE.replace("  staging:", "\tstaging:"))


def wrong_types():
    c = "wrong-types"
    cases = [
        ("name-list", "name: corpus-base", "name: [corpus, base]"),
        ("name-map", "name: corpus-base", "name: { a: b }"),
        ("name-null", "name: corpus-base", "name: ~"),
        ("description-list", "description: a valid", "description: [a]\nx-description: a valid"),
        ("schedule-int", 'schedule: "0 10 * * MON-FRI"', "schedule: 10"),
        ("targets-list", "targets:\n  web-pods:\n", "targets:\n  - web-pods:\n"),
        ("steady-state-string", "steady-state: [web-http, db-port]", "steady-state: web-http"),
        ("steady-state-map", "steady-state: [web-http, db-port]", "steady-state: { web-http: true }"),
        ("faults-map", "faults:\n  - pod-kill:\n", "faults:\n  first:\n  - pod-kill:\n"),
        ("recovery-string", "recovery:\n  objective: 30s\n", "recovery: fast\nx-recovery:\n  objective: 30s\n"),
        ("repeat-string", "repeat: 1\n", "repeat: once\n"),
        ("repeat-list", "repeat: 1\n", "repeat: [1]\n"),
        ("cooldown-int", "cooldown: 5s\n", "cooldown: 5\n"),
        ("cooldown-map", "cooldown: 5s\n", "cooldown: { seconds: 5 }\n"),
        ("every-list", "    every: 100ms\n", "    every: [100ms]\n"),
        ("every-bool", "    every: 100ms\n", "    every: yes-please\n"),
        ("headers-list", "      method: GET\n", "      method: GET\n      headers: [X-Drill]\n"),
        ("header-value-map", "      method: GET\n", "      method: GET\n      headers: { X-Drill: { a: 1 } }\n"),
        ("command-run-string", '      run: ["true"]\n      timeout: 30s\n', "      run: true\n      timeout: 30s\n"),
        ("probe-run-map", '    command:\n      run: ["true"]\n', "    command:\n      run: { bin: true }\n"),
        ("expect-status-string", "      expect-status: 200\n", "      expect-status: ok\n"),
        ("expect-status-map", "      expect-status: 200\n", "      expect-status: { code: 200 }\n"),
        ("method-list", "      method: GET\n", "      method: [GET, POST]\n"),
        ("count-string", "      count: 1\n", "      count: one\n"),
        ("count-bool", "      count: 1\n", "      count: true\n"),
        ("ready-bool", "      ready: all\n", "      ready: true\n"),
        ("ready-word", "      ready: all\n", "      ready: most\n"),
        ("signal-int", "      signal: SIGTERM\n", "      signal: 15\n"),
        ("probe-body-list", "  db-port:\n    tcp:\n", "  db-port:\n    - tcp:\n"),
        ("recovery-probes-string", "  probes: [web-http]\n", "  probes: web-http\n"),
        ("abort-when-map", "abort-when:\n  - probe: web-http\n    failing-for: 2m\n", "abort-when:\n  probe: web-http\n  failing-for: 2m\n"),
        ("environments-map", "description: a valid", "environments: { staging: true }\ndescription: a valid"),
        ("error-rate-list", "    failing-for: 2m\n", "    error-rate: [0.5]\n    window: 10s\n"),
        ("pid-file-list", "      pid-file: /run/worker.pid\n", "      pid-file: [/run/worker.pid]\n"),
    ]
    for name, old, new in cases:
        add(c, name, sub(old, new))


def unknown_keys():
    c = "unknown-keys"
    cases = [
        ("top-level-typo", "repeat: 1\n", "repeats: 1\n"),
        ("top-level-foreign", "repeat: 1\n", "repeat: 1\nretries: 3\n"),
        ("target-kind", "    kubernetes:\n      namespace: shop\n", "    kubernetis:\n      namespace: shop\n"),
        ("kube-target-field", "      count: 1\n", "      count: 1\n      namespaces: [shop]\n"),
        ("process-target-field", "      pid-file: /run/worker.pid\n", "      pidfile: /run/worker.pid\n"),
        ("probe-kind", "    tcp:\n", "    tpc:\n"),
        ("probe-common", "    every: 100ms\n", "    evry: 100ms\n"),
        ("http-field", "      method: GET\n", "      metod: GET\n"),
        ("http-field-2", "      max-latency: 300ms\n", "      max_latency: 300ms\n"),
        ("tcp-field", '      address: "127.0.0.1:5432"\n', '      address: "127.0.0.1:5432"\n      host: db\n'),
        ("command-probe-field", '    command:\n      run: ["true"]\n', '    command:\n      run: ["true"]\n      shell: bash\n'),
        ("kube-probe-field", "      ready: all\n", "      ready: all\n      replicas: 3\n"),
        ("fault-kind", "  - pod-kill:\n", "  - pod-kil:\n"),
        ("pod-kill-field", "      grace-period: 0s\n", "      grace: 0s\n"),
        ("process-kill-field", "      signal: SIGTERM\n", "      sig: SIGTERM\n"),
        ("command-fault-field", "      timeout: 30s\n", "      timeout: 30s\n      rollback: [\"true\"]\n"),
        ("recovery-field", "  stable-for: 3s\n", "  stable_for: 3s\n"),
        ("abort-field", "    failing-for: 2m\n", "    failing: 2m\n"),
        ("simulation-field", "description: a valid", "simulation: { scenario: x.yaml, seed: 1 }\ndescription: a valid"),
        ("capitalised-top", "name: corpus-base", "Name: corpus-base"),
        ("empty-key", "repeat: 1\n", "repeat: 1\n\"\": 1\n"),
        ("unicode-key", "repeat: 1\n", "repeat: 1\nrépéter: 2\n"),
        ("env-top-level", "environments:", "environment:", ),
        ("env-field", "    kube-context: prod\n", "    kube-contex: prod\n"),
    ]
    for name, old, new in cases:
        base = ENV_BASE if name.startswith("env-") else BASE
        add(c, name, sub(old, new, base))


def duplicate_keys():
    c = "duplicate-keys"
    cases = [
        ("top-name", "repeat: 1\n", "repeat: 1\nname: again\n"),
        ("top-probes", "repeat: 1\n", "repeat: 1\nprobes: {}\n"),
        ("target-name", "  worker:\n", "  web-pods:\n"),
        ("probe-name", "  smoke:\n", "  db-port:\n"),
        ("http-field", "      method: GET\n", "      method: GET\n      method: POST\n"),
        ("kube-target-field", "      count: 1\n", "      count: 1\n      count: 2\n"),
        ("recovery-field", "  stable-for: 3s\n", "  stable-for: 3s\n  objective: 1s\n"),
        ("flow-map", "steady-state: [web-http, db-port]", "steady-state: [web-http, db-port]\nx: { a: 1, a: 2 }"),
        ("headers", "      method: GET\n", "      method: GET\n      headers: { X-A: \"1\", X-A: \"2\" }\n"),
        ("fault-item", "      signal: SIGTERM\n", "      signal: SIGTERM\n      signal: SIGKILL\n"),
        ("abort-item", "    failing-for: 2m\n", "    failing-for: 2m\n    probe: db-port\n"),
        ("quoted-vs-plain", "repeat: 1\n", "repeat: 1\n\"repeat\": 2\n"),
        ("env-name", "  production:\n", "  staging:\n"),
        ("many", "repeat: 1\n", "repeat: 1\n" + "cooldown: 1s\n" * 5),
    ]
    for name, old, new in cases:
        base = ENV_BASE if name.startswith("env-") else BASE
        add(c, name, sub(old, new, base))


def empty():
    c = "empty"
    for name, data in [
        ("zero-bytes", b""),
        ("one-newline", b"\n"),
        ("many-newlines", b"\n" * 200),
        ("spaces", b"     "),
        ("spaces-and-newlines", b"  \n \n   \n"),
        ("crlf-only", b"\r\n\r\n"),
        ("comment", b"# nothing here\n"),
        ("comments-and-blank", b"# a\n\n   # b\n#c"),
        ("comment-no-newline", b"#"),
        ("document-marker", b"---\n"),
        ("document-markers", b"---\n...\n"),
        ("tilde", b"~\n"),
        ("null-word", b"null\n"),
        ("empty-map", b"{}\n"),
        ("empty-list", b"[]\n"),
        ("bom-only", b"\xef\xbb\xbf"),
        ("bom-and-comment", b"\xef\xbb\xbf# x\n"),
        ("empty-string", b"''\n"),
        ("only-keys-null", b"name:\nprobes:\nfaults:\nrecovery:\n"),
    ]:
        add(c, name, data)


def negative_durations():
    c = "negative-durations"
    for key in DURATIONS:
        add(c, key, set_duration(key, "-5s"))
    add(c, "minus-zero", set_duration("objective", "-0s"))
    add(c, "spaced-minus", set_duration("cooldown", "' -1m'"))
    add(c, "negative-int", set_duration("every", "-100"))
    add(c, "env-within", sub("within: 7d", "within: -7d", ENV_BASE))
    add(c, "scenario-delay", sub("ready-delay: 300ms", "ready-delay: -300ms", SCENARIO_BASE))


def zero_durations():
    c = "zero-durations"
    for key in ["http-timeout", "max-latency", "every", "tcp-timeout",
                "command-timeout", "objective", "recovery-timeout", "failing-for"]:
        add(c, key, set_duration(key, "0s"))
    # http and tcp probes may check back to back (`every-during: 0s`); other kinds may not.
    smoke = '  smoke:\n    command:\n      run: ["true"]\n'
    add(c, "every-during", sub(smoke, smoke + "    every-during: 0s\n"))
    add(c, "bare-zero-objective", set_duration("objective", "0"))
    add(c, "zero-ms-every", set_duration("every", "0ms"))
    add(c, "zero-compound", set_duration("objective", "0h 0m 0s"))
    add(c, "env-within", sub("within: 7d", "within: 0s", ENV_BASE))


def huge_durations():
    c = "huge-durations"
    add(c, "objective-years", set_duration("objective", "100years"))
    add(c, "timeout-huge-hours", set_duration("recovery-timeout", "1000000h"))
    add(c, "overflow-seconds", set_duration("objective", "99999999999999999999s"))
    add(c, "overflow-sum", set_duration("cooldown", "18446744073709551615s 18446744073709551615s"))
    add(c, "cooldown-month", set_duration("cooldown", "40days"))
    add(c, "every-day", set_duration("every", "2d"))
    add(c, "http-timeout-week", set_duration("http-timeout", "1week"))
    add(c, "grace-year", set_duration("grace-period", "1y"))
    add(c, "failing-for-huge", set_duration("failing-for", "9999999999h"))
    add(c, "stable-for-days", set_duration("stable-for", "10d"))
    add(c, "u64-max-ns", set_duration("tcp-timeout", "18446744073709551616ns"))
    add(c, "many-parts", set_duration("objective", " ".join(["1000000h"] * 50)))


def unparseable_durations():
    c = "unparseable-durations"
    for i, v in enumerate([
        "1.5s", "10", "ten seconds", "5 parsecs", "s", "''", "'   '", "1e3s", "PT5M", "5:00",
        "∞", "0x10s", "1s-", "--1s", "1_000ms", "one", "'1 s s'", "NaN", ".inf", "1,5s",
        "5 minutes ago", "'5ms\\u0000'",
    ]):
        key = list(DURATIONS)[i % len(DURATIONS)]
        add(c, f"{i:02d}-{key}", set_duration(key, v))
    add(c, "scenario-range-backwards", sub("start-delay: 100ms..300ms", "start-delay: 300ms..100ms", SCENARIO_BASE))
    add(c, "scenario-range-open", sub("start-delay: 100ms..300ms", "start-delay: 100ms..", SCENARIO_BASE))


def invalid_selectors():
    c = "invalid-selectors"
    for i, v in enumerate([
        '""', "' '", "app in a,b", '"env in (staging"', '"env in staging)"', "-app=x", "app=check out",
        '"app=,"', '",app=web"', '"app=web,,tier=x"', '"app notin ()"', '"app in ()"', "app=web!",
        '"app==="', '"!!app"', '"a/b/c=d"', '"_app=web"', "app=" + "x" * 64, "k" * 64 + "=v",
        '"app=web;rm -rf /"', '"app=$(id)"', '"Prefix.With.Caps/app=x"', '"app=x)"', '"app (x)"',
        '"app=x y=z"', '"=value"',
    ]):
        add(c, f"{i:02d}", sub("      selector: app=web\n", f"      selector: {v}\n"))


def invalid_cron():
    c = "invalid-cron"
    for i, v in enumerate([
        "'* * * *'", "'* * * * * *'", "'60 * * * *'", "'* 24 * * *'", "'* * 0 * *'", "'* * 32 * *'",
        "'* * * 13 *'", "'* * * 0 *'", "'* * * * 8'", "'*/0 * * * *'", "'*/61 * * * *'", "'5-1 * * * *'",
        "'a b c d e'", "'* * * FOO *'", "'* * * * FUNDAY'", "'1,,2 * * * *'", "'@hourly'", "'@reboot'",
        "''", "'-1 * * * *'", "'* * * * MON-'", "'1/2/3 * * * *'", "'99999999999 * * * *'", "'+5 * * * *'",
    ]):
        add(c, f"{i:02d}", sub('schedule: "0 10 * * MON-FRI"', f"schedule: {v}"))


def invalid_urls():
    c = "invalid-urls"
    for i, v in enumerate([
        '"not a url"', '"ftp://127.0.0.1/x"', '"http://"', '"http:// space.example/"', '"://127.0.0.1"',
        '"localhost:8080"', '""', '"file:///etc/passwd"', '"http://[::1/"', '"http://host:99999/"',
        '"http://exa mple.com/"', '"javascript:alert(1)"', '"unix:///var/run/docker.sock"',
        '"/healthz"', '"https://"',
    ]):
        add(c, f"url-{i:02d}", sub('      url: "http://127.0.0.1:8080/healthz"\n', f"      url: {v}\n"))
    for i, v in enumerate(['"127.0.0.1"', '"127.0.0.1:"', '":5432"', '"127.0.0.1:99999"', '"db:port"', '""']):
        add(c, f"tcp-address-{i:02d}", sub('      address: "127.0.0.1:5432"\n', f"      address: {v}\n"))
    add(c, "env-var-url", sub('vars: { web_url: "http://127.0.0.1:8080" }', 'vars: [web_url]', ENV_BASE))


def invalid_names():
    c = "invalid-names"
    bad = [
        "drill;reboot", "drill|tee", "drill&bg", "drill$HOME", "drill$(id)", "drill`id`",
        "../../etc/passwd", "../escape", "a/b", "..", ".", "-leading", "trailing-", "UPPER",
        "with space", "semi;colon", "x" * 64, "tab\\there", "new\\nline", "back\\\\slash",
        "émoji-😀", "nul\\0byte", "dollar{brace}", "*glob*", "~home", "quote'single",
    ]
    for i, v in enumerate(bad):
        quoted = '"' + v.replace('"', '\\"') + '"'
        add(c, f"experiment-{i:02d}", sub("name: corpus-base", f"name: {quoted}"))
    for i, v in enumerate(bad[:12]):
        quoted = '"' + v + '"'
        # A target renamed everywhere it is used.
        add(c, f"target-{i:02d}", BASE.replace("  worker:\n", f"  {quoted}:\n").replace("target: worker", f"target: {quoted}"))
    for i, v in enumerate(bad[:10]):
        quoted = '"' + v + '"'
        add(c, f"probe-{i:02d}", sub("  smoke:\n", f"  {quoted}:\n"))
    for i, v in enumerate(["sh;op", "../shop", "Shop", "a" * 64]):
        add(c, f"namespace-{i:02d}", sub("      namespace: shop\n", f'      namespace: "{v}"\n'))
    add(c, "env-name-traversal", sub("  staging:\n", '  "../staging":\n', ENV_BASE).replace("promote-from: staging", 'promote-from: "../staging"'))
    add(c, "env-name-shell", sub("  production:\n", '  "prod;rm -rf":\n', ENV_BASE))
    add(c, "scenario-ns-shell", sub("  shop:\n", '  "shop;id":\n', SCENARIO_BASE))
    add(c, "scenario-deploy-traversal", sub("      web: {", '      "../web": {', SCENARIO_BASE))
    add(c, "simulation-traversal", sub("description: a valid", "simulation: { scenario: ../../../../../../nonexistent/scenario.yaml }\ndescription: a valid"))


def non_utf8():
    c = "non-utf8"
    b = BASE.encode()
    add(c, "latin1-in-name", b.replace(b"corpus-base", b"corpus-b\xe9se"))
    add(c, "ff-first-byte", b"\xff" + b)
    add(c, "lone-continuation", b.replace(b"repeat: 1", b"repeat: \x80"))
    add(c, "truncated-multibyte-at-end", b + b"# \xe2\x82")
    add(c, "overlong-slash", b.replace(b"/healthz", b"\xc0\xafhealthz"))
    add(c, "surrogate-encoded", b.replace(b"# nothing", b"").replace(b"cooldown: 5s", b"cooldown: \xed\xa0\x80"))
    add(c, "utf16-le-bom", "\ufeff".encode("utf-16-le") + BASE.encode("utf-16-le"))
    add(c, "utf16-be-bom", "\ufeff".encode("utf-16-be") + BASE.encode("utf-16-be"))
    add(c, "utf16-le-no-bom", BASE.encode("utf-16-le"))
    add(c, "utf32-le", BASE.encode("utf-32"))
    add(c, "beyond-unicode", b.replace(b"repeat: 1", b"repeat: \xf5\x80\x80\x80"))
    add(c, "invalid-in-comment-last-line", b + b"# trailing \xfe\xfe\n")
    add(c, "gzip-magic", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(256)))
    add(c, "binary-zeros", bytes(64))


def bom():
    c = "bom"
    bom8 = "\ufeff"
    add(c, "bom-then-tab", bom8 + "\t" + BASE)
    add(c, "double-bom", bom8 + bom8 + BASE)
    add(c, "bom-in-middle", sub("repeat: 1\n", bom8 + "repeat: 1\n"))
    add(c, "bom-in-name", sub("name: corpus-base", "name: corpus" + bom8 + "base"))
    add(c, "bom-then-syntax-error", bom8 + sub("repeat: 1\n", "repeat: [1\n"))
    add(c, "bom-then-list", bom8 + "- a\n- b\n")
    add(c, "bom-then-unknown-key", bom8 + sub("repeat: 1\n", "repeats: 1\n"))
    add(c, "bom-then-bad-duration", bom8 + set_duration("every", "fast"))


def deep_nesting():
    c = "deep-nesting"
    add(c, "flow-seq-65", "[" * 65 + "]" * 65 + "\n")
    add(c, "flow-seq-10000", "[" * 10000 + "]" * 10000 + "\n")
    add(c, "flow-seq-unclosed-20000", "[" * 20000 + "\n")
    add(c, "flow-map-70", "{a: " * 70 + "1" + "}" * 70 + "\n")
    add(c, "block-maps-80", "".join("  " * i + f"k{i}:\n" for i in range(80)) + "  " * 80 + "v\n")
    add(c, "block-seqs-80", "".join("  " * i + "-\n" for i in range(80)) + "  " * 80 + "x\n")
    add(c, "inside-probe", sub("    every: 100ms\n", "    every: " + "[" * 70 + "]" * 70 + "\n"))
    add(c, "inside-headers", sub("      method: GET\n", "      method: GET\n      headers: " + "{a: " * 66 + "1" + "}" * 66 + "\n"))
    add(c, "mixed-5000", "[{a: " * 5000 + "1" + "}]" * 5000 + "\n")
    add(c, "exactly-at-limit-plus-one", "[" * 64 + "1" + "]" * 64 + "\n")
    add(c, "env-deep", "environments:\n  local:\n    vars: " + "[" * 70 + "]" * 70 + "\n")
    add(c, "scenario-deep", "namespaces: " + "{a: " * 70 + "1" + "}" * 70 + "\n")


def alias_bombs():
    c = "alias-bombs"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    add(c, "billion-laughs", "\n".join(lines) + "\n")
    add(c, "billion-laughs-in-drill", sub("repeat: 1\n", "repeat: 1\n" + "\n".join(lines) + "\n"))
    add(c, "quadratic-blowup", "a: &a " + '"' + "x" * 20000 + '"\n' + "b: [" + ",".join(["*a"] * 2000) + "]\n")
    add(c, "merge-key-chain", "base: &b { every: 1s }\n" + "".join(f"p{i}: &p{i} {{ <<: *{'b' if i == 0 else 'p' + str(i - 1)} }}\n" for i in range(30)))
    add(c, "self-reference", "a: &a [*a]\n")
    add(c, "alias-as-key", "a: &k key\n*k : value\n")
    add(c, "block-bomb", "a: &a\n  - x\n  - x\nb: &b\n  - *a\n  - *a\nc: &c\n  - *b\n  - *b\nd:\n  - *c\n  - *c\n")
    add(c, "env-bomb", "environments: &e\n  local: { vars: { a: b } }\nx: *e\n")
    add(c, "scenario-bomb", "namespaces:\n  a: &a { labels: { x: y } }\n  b: *a\n")


def anchors():
    c = "anchors"
    add(c, "scalar-anchor", sub("name: corpus-base", "name: &n corpus-base"))
    add(c, "map-anchor-unused", sub("recovery:\n", "recovery: &r\n"))
    add(c, "seq-anchor", sub("steady-state: [web-http, db-port]", "steady-state: &s [web-http, db-port]"))
    add(c, "alias-reused-timeout", sub("      timeout: 1s\n", "      timeout: &t 1s\n").replace("      timeout: 30s\n", "      timeout: *t\n"))
    add(c, "undefined-alias", sub("repeat: 1\n", "repeat: *nothing\n"))
    add(c, "anchor-on-key", sub("repeat: 1\n", "&k repeat: 1\n"))
    add(c, "anchor-without-name", sub("repeat: 1\n", "repeat: & 1\n"))
    add(c, "alias-without-name", sub("repeat: 1\n", "repeat: * \n"))
    add(c, "merge-key", sub("  db-port:\n    tcp:\n", "  db-port:\n    <<: { every: 1s }\n    tcp:\n"))
    add(c, "anchor-in-flow", sub("steady-state: [web-http, db-port]", "steady-state: [&p web-http, *p]"))


def bad_references():
    c = "bad-references"
    cases = [
        ("steady-state-unknown", "steady-state: [web-http, db-port]", "steady-state: [web-http, db-prot]"),
        ("steady-state-target-name", "steady-state: [web-http, db-port]", "steady-state: [web-pods]"),
        ("recovery-probe-unknown", "  probes: [web-http]\n", "  probes: [web-htp]\n"),
        ("fault-target-unknown", "      target: web-pods\n", "      target: web-pod\n"),
        ("fault-target-probe-name", "      target: worker\n", "      target: db-port\n"),
        ("abort-probe-unknown", "  - probe: web-http\n", "  - probe: nope\n"),
        ("environment-unknown", "description: a valid", "environments: [staging, qa]\ndescription: a valid"),
        ("simulation-missing-file", "description: a valid", "simulation: { scenario: does-not-exist.yaml }\ndescription: a valid"),
        ("simulation-directory", "description: a valid", "simulation: { scenario: . }\ndescription: a valid"),
        ("workload-bad", "      count: 1\n", "      count: 1\n      workload: cronjob/web\n"),
        ("kube-probe-no-namespace", "      deployment: shop/web\n", "      deployment: web\n"),
        ("env-promote-unknown", "promote-from: staging", "promote-from: stagin"),
        ("env-promote-self", "promote-from: staging", "promote-from: production"),
        ("env-within-without-promote", "    promote-from: staging\n", ""),
    ]
    for name, old, new in cases:
        base = ENV_BASE if name.startswith("env-") else BASE
        add(c, name, sub(old, new, base))


def bad_steps():
    """Steps (a fault's `wait:`) and attribution (a probe's `after:`) gone wrong."""
    c = "bad-steps"
    kill = ("  - pod-kill:\n", "  - name: kill\n    pod-kill:\n")
    stop = "  - process-kill:\n"
    cmd = ("  - command:\n", "  - name: cmd\n    command:\n")
    cases = [
        ("after-unknown-fault", [kill, (stop, "  - wait: { after: kil, for: 1s }\n    process-kill:\n")]),
        ("after-no-names", [(stop, "  - wait: { after: kill, for: 1s }\n    process-kill:\n")]),
        ("after-itself", [(stop, "  - name: stop\n    wait: { after: stop, for: 1s }\n    process-kill:\n")]),
        ("after-later-fault", [cmd, (stop, "  - wait: { after: cmd, for: 1s }\n    process-kill:\n")]),
        ("removed-acts-once", [kill, (stop, "  - wait: { removed: kill }\n    process-kill:\n")]),
        ("after-and-removed", [kill, (stop, "  - wait: { after: kill, removed: kill }\n    process-kill:\n")]),
        ("first-fault-waits", [("  - pod-kill:\n", "  - wait: 5s\n    pod-kill:\n")]),
        ("waits-for-nothing", [kill, (stop, "  - wait: { after: kill }\n    process-kill:\n")]),
        ("empty-wait", [(stop, "  - wait: {}\n    process-kill:\n")]),
        ("within-not-after-for", [(stop, "  - wait: { for: 10s, within: 5s }\n    process-kill:\n")]),
        ("until-unknown-probe", [(stop, "  - wait: { until: { probe: web-htp, is: failing } }\n    process-kill:\n")]),
        ("until-bad-state", [(stop, "  - wait: { until: { probe: web-http, is: down } }\n    process-kill:\n")]),
        ("until-no-state", [(stop, "  - wait: { until: { probe: web-http } }\n    process-kill:\n")]),
        ("wait-unknown-key", [(stop, "  - wait: { delay: 5s }\n    process-kill:\n")]),
        ("wait-bad-duration", [(stop, "  - wait: soon\n    process-kill:\n")]),
        ("wait-negative", [(stop, "  - wait: { for: -1s }\n    process-kill:\n")]),
        ("wait-list", [(stop, "  - wait: [5s]\n    process-kill:\n")]),
        ("probe-after-unknown-fault", [kill, ("    every-during: 50ms\n", "    every-during: 50ms\n    after: kil\n")]),
        ("probe-after-no-fault", [("    every-during: 50ms\n", "    every-during: 50ms\n    after: []\n")]),
        ("fault-name-twice", [kill, (stop, "  - name: kill\n    process-kill:\n")]),
        ("abort-after-unknown-fault", [kill, ("    failing-for: 2m\n", "    failing-for: 2m\n    after: kil\n")]),
        ("abort-after-no-names", [("    failing-for: 2m\n", "    failing-for: 2m\n    after: kill\n")]),
    ]
    for name, pairs in cases:
        add(c, name, subs(BASE, *pairs))


def bad_nodes():
    """Node faults (`node-drain`, `node-down`, `zone-outage`) and `nodes` targets gone wrong."""
    c = "bad-nodes"
    tgt = "  worker:\n"
    fault = "  - command:\n"

    def target(body):
        return (tgt, f"  machines:\n    nodes: {body}\n  worker:\n")

    def with_fault(f):
        return (fault, f"  - {f}\n  - command:\n")

    cases = [
        ("target-says-nothing", [target("{}"), with_fault("node-drain: { target: machines }")]),
        ("target-count-zero", [target("{ zone: zone-a, count: 0 }"), with_fault("node-drain: { target: machines }")]),
        ("target-count-and-percent", [target("{ zone: zone-a, count: 1, percent: 50 }"), with_fault("node-drain: { target: machines }")]),
        ("target-max-percent-all", [target("{ zone: zone-a, max-percent: 100 }"), with_fault("node-drain: { target: machines }")]),
        ("target-max-nodes-zero", [target("{ zone: zone-a, max-nodes: 0 }"), with_fault("node-drain: { target: machines }")]),
        ("target-bad-selector", [target("{ selector: \"pool in (a\" }"), with_fault("node-drain: { target: machines }")]),
        ("target-bad-name", [target("{ names: [Node_1] }"), with_fault("node-drain: { target: machines }")]),
        ("target-unknown-key", [target("{ zone: zone-a, region: eu }"), with_fault("node-drain: { target: machines }")]),
        ("drain-with-provider", [target("{ zone: zone-a }"), with_fault("node-drain: { target: machines, provider: simulated }")]),
        ("drain-not-ready-within", [target("{ zone: zone-a }"), with_fault("node-drain: { target: machines, not-ready-within: 1m }")]),
        ("down-not-ready-within-zero", [target("{ zone: zone-a }"), with_fault("node-down: { target: machines, provider: simulated, not-ready-within: 0s }")]),
        ("drain-negative-timeout", [target("{ zone: zone-a }"), with_fault("node-drain: { target: machines, timeout: -1m }")]),
        ("drain-pod-target", [with_fault("node-drain: { target: web-pods }")]),
        ("pod-kill-nodes-target", [target("{ zone: zone-a }"), ("      target: web-pods\n", "      target: machines\n")]),
        ("down-without-provider", [target("{ zone: zone-a }"), with_fault("node-down: { target: machines }")]),
        ("down-with-grace", [target("{ zone: zone-a }"), with_fault("node-down: { target: machines, provider: simulated, grace-period: 1s }")]),
        ("down-unknown-provider", [target("{ zone: zone-a }"), with_fault("node-down: { target: machines, provider: magic }")]),
        ("down-command-no-stop", [target("{ zone: zone-a }"), with_fault("node-down: { target: machines, provider: { command: { stop: [], start: [true] } } }")]),
        ("down-unknown-target", [with_fault("node-down: { target: machins, provider: simulated }")]),
        ("zone-bad-by", [with_fault("zone-outage: { zone: zone-a, by: explode }")]),
        ("zone-empty", [with_fault("zone-outage: { zone: \"\", by: drain }")]),
        ("zone-down-no-provider", [with_fault("zone-outage: { zone: zone-a, by: down }")]),
        ("zone-drain-with-provider", [with_fault("zone-outage: { zone: zone-a, by: drain, provider: simulated }")]),
        ("zone-max-percent-zero", [with_fault("zone-outage: { zone: zone-a, by: drain, max-percent: 0 }")]),
        ("zone-unknown-key", [with_fault("zone-outage: { zones: [zone-a], by: drain }")]),
        ("zone-allow-protected-string", [with_fault("zone-outage: { zone: zone-a, by: drain, allow-protected: maybe }")]),
    ]
    for name, pairs in cases:
        add(c, name, subs(BASE, *pairs))


def kind_mismatches():
    c = "kind-mismatches"
    cases = [
        ("pod-kill-on-process", "      target: web-pods\n", "      target: worker\n"),
        ("process-kill-on-kube", "      target: worker\n", "      target: web-pods\n"),
        ("probe-two-kinds", '      address: "127.0.0.1:5432"\n', '      address: "127.0.0.1:5432"\n    http: { url: "http://127.0.0.1/" }\n'),
        ("probe-no-kind", '    command:\n      run: ["true"]\n', "    every: 1s\n"),
        ("fault-two-kinds", "  - pod-kill:\n      target: web-pods\n", "  - command: { run: [x] }\n    pod-kill:\n      target: web-pods\n"),
        ("fault-no-kind", "  - pod-kill:\n      target: web-pods\n      grace-period: 0s\n", "  - {}\n"),
        ("target-two-kinds", "      pid-file: /run/worker.pid\n", "      pid-file: /run/worker.pid\n    kubernetes: { namespace: shop, selector: app=x }\n"),
        ("target-no-kind", "  worker:\n    process:\n      pid-file: /run/worker.pid\n", "  worker: {}\n"),
        ("process-target-both", "      pid-file: /run/worker.pid\n", "      pid-file: /run/worker.pid\n      command-line: worker\n"),
        ("process-target-neither", "      pid-file: /run/worker.pid\n", "      {}\n"),
        ("count-and-percent", "      count: 1\n", "      count: 1\n      percent: 50\n"),
        ("kube-probe-two-workloads", "      deployment: shop/web\n", "      deployment: shop/web\n      statefulset: shop/db\n"),
        ("kube-probe-no-workload", "      deployment: shop/web\n", ""),
        ("fault-item-scalar", "  - pod-kill:\n      target: web-pods\n      grace-period: 0s\n", "  - pod-kill\n"),
        ("error-rate-and-failing-for", "    failing-for: 2m\n", "    failing-for: 2m\n    error-rate: 0.5\n    window: 10s\n"),
    ]
    for name, old, new in cases:
        add(c, name, sub(old, new))


def bad_interpolation():
    c = "bad-interpolation"
    for i, v in enumerate([
        '"${unclosed"', '"${}"', '"${unknown_var}"', '"${env:FIREDRILL_SURELY_UNSET_VARIABLE}"', '"${1bad}"',
        '"${a b}"', '"${${web_url}}"', '"${env:}"', '"${env:lower-case-dash}"', '"$${x} ${nope}"',
        '"${web_url"', '"${web_url}}${"', '"${' + "v" * 300 + '}"', '"${sim.}"', '"${:}"', '"${env:A=B}"',
    ]):
        add(c, f"url-{i:02d}", sub('      url: "http://127.0.0.1:8080/healthz"\n', f"      url: {v}\n"))
    # Once cubic in the length of the value: 2000 of these took seconds.
    add(c, "many-in-one-value", sub('      url: "http://127.0.0.1:8080/healthz"\n', '      url: "' + "${a}" * 5000 + '"\n'))
    add(c, "in-duration", set_duration("every", '"${nope}"'))
    add(c, "in-selector", sub("      selector: app=web\n", '      selector: "app=${missing}"\n'))
    add(c, "in-simulation", sub("description: a valid", 'simulation: { scenario: "${dir}/s.yaml" }\ndescription: a valid'))
    add(c, "in-name", sub("name: corpus-base", 'name: "${name_var}"'))
    add(c, "env-file-other-var", sub('vars: { web_url: "http://127.0.0.1:8080" }', 'vars: { web_url: "${other}" }', ENV_BASE))
    add(c, "env-file-unclosed", sub('vars: { web_url: "http://127.0.0.1:8080" }', 'vars: { web_url: "${env:HOME" }', ENV_BASE))


def out_of_range():
    c = "out-of-range"
    cases = [
        ("percent-0", "      count: 1\n", "      percent: 0\n"),
        ("percent-101", "      count: 1\n", "      percent: 101\n"),
        ("percent-negative", "      count: 1\n", "      percent: -5\n"),
        ("percent-string-150", "      count: 1\n", '      percent: "150%"\n'),
        ("percent-float", "      count: 1\n", "      percent: 12.5\n"),
        ("percent-huge", "      count: 1\n", "      percent: 99999999999999999999\n"),
        ("count-0", "      count: 1\n", "      count: 0\n"),
        ("count-negative", "      count: 1\n", "      count: -1\n"),
        ("count-float", "      count: 1\n", "      count: 1.5\n"),
        ("count-huge", "      count: 1\n", "      count: 18446744073709551616\n"),
        ("count-i64-min", "      count: 1\n", "      count: -9223372036854775808\n"),
        ("max-targets-0", "      count: 1\n", "      count: 1\n      max-targets: 0\n"),
        ("repeat-0", "repeat: 1\n", "repeat: 0\n"),
        ("repeat-100000", "repeat: 1\n", "repeat: 100000\n"),
        ("repeat-negative", "repeat: 1\n", "repeat: -3\n"),
        ("repeat-float", "repeat: 1\n", "repeat: 2.0\n"),
        ("repeat-exp", "repeat: 1\n", "repeat: 1e3\n"),
        ("repeat-inf", "repeat: 1\n", "repeat: .inf\n"),
        ("repeat-nan", "repeat: 1\n", "repeat: .nan\n"),
        ("repeat-hex-huge", "repeat: 1\n", "repeat: 0xFFFFFFFFFFFFFFFFFF\n"),
        ("expect-status-99", "      expect-status: 200\n", "      expect-status: 99\n"),
        ("expect-status-600", "      expect-status: 200\n", "      expect-status: 600\n"),
        ("expect-status-float", "      expect-status: 200\n", "      expect-status: 200.0\n"),
        ("expect-status-list-bad", "      expect-status: 200\n", "      expect-status: [200, 0, -1]\n"),
        ("ready-negative", "      ready: all\n", "      ready: -1\n"),
        ("ready-float", "      ready: all\n", "      ready: 1.5\n"),
        ("error-rate-above-1", "    failing-for: 2m\n", "    error-rate: 1.5\n    window: 10s\n"),
        ("error-rate-negative", "    failing-for: 2m\n", "    error-rate: -0.1\n    window: 10s\n"),
        ("error-rate-percent-200", "    failing-for: 2m\n", '    error-rate: "200%"\n    window: 10s\n'),
        ("error-rate-nan", "    failing-for: 2m\n", "    error-rate: .nan\n    window: 10s\n"),
        ("scenario-replicas-negative", "web: { replicas: 3", "web: { replicas: -3"),
        ("scenario-replicas-huge", "web: { replicas: 3", "web: { replicas: 99999999999"),
        ("scenario-replicas-float", "web: { replicas: 3", "web: { replicas: 2.5"),
    ]
    for name, old, new in cases:
        base = SCENARIO_BASE if name.startswith("scenario-") else BASE
        add(c, name, sub(old, new, base))


def wrong_root():
    c = "wrong-root"
    for name, data in [
        ("list", "- name: x\n- probes: {}\n"),
        ("flow-list", "[name, probes]\n"),
        ("string", "just a sentence\n"),
        ("quoted-string", '"name: x"\n'),
        ("int", "42\n"),
        ("float", "3.14\n"),
        ("bool", "true\n"),
        ("block-literal", "|\n  name: x\n  probes: {}\n"),
        ("tagged-str", "!!str name\n"),
        ("list-of-drills", "- " + BASE.replace("\n", "\n  ").rstrip() + "\n"),
        ("json-array", '["name", "x"]'),
        ("env-file-list", "- local\n- staging\n"),
        ("env-file-string", "environments\n"),
        ("scenario-list", "- shop\n"),
        ("scenario-string", "shop\n"),
    ]:
        add(c, name, data)


def environments():
    c = "environments"
    cases = [
        ("unknown-top-key", "environments:", "environment:"),
        ("environments-list", "environments:\n  local:\n    vars: { web_url: \"http://127.0.0.1:8080\" }\n", "environments:\n  - local\n"),
        ("local-protected", "  local:\n", "  local:\n    protected: true\n"),
        ("bad-time-zone", "time-zone: Europe/Berlin", "time-zone: Europe/Berlinn"),
        ("time-zone-offset", "time-zone: Europe/Berlin", "time-zone: +02:00"),
        ("protected-string", "protected: true", "protected: maybe"),
        ("within-bad", "within: 7d", "within: a week"),
        ("within-fraction", "within: 7d", "within: 1.5d"),
        ("vars-list", 'vars: { web_url: "http://127.0.0.1:8080" }', "vars: [a, b]"),
        ("vars-nested", 'vars: { web_url: "http://127.0.0.1:8080" }', "vars: { a: { b: c } }"),
        ("name-uppercase", "  staging:\n", "  Staging:\n"),
        ("name-too-long", "  staging:\n", "  " + "s" * 70 + ":\n"),
        ("kube-context-list", "kube-context: prod", "kube-context: [a, b]"),
        ("env-value-null", "  production:\n    kube-context: prod\n    protected: true\n    promote-from: staging\n    within: 7d\n", "  production: 7\n"),
        ("promote-from-list", "promote-from: staging", "promote-from: [staging]"),
        ("unknown-env-key", "    kube-context: staging-admin\n", "    context: staging-admin\n"),
        ("vars-interp-bad-env-name", 'vars: { web_url: "http://127.0.0.1:8080" }', 'vars: { web_url: "${env:}" }'),
    ]
    for name, old, new in cases:
        add(c, name, sub(old, new, ENV_BASE))
    add(c, "missing-environments", "# no environments here\nother: 1\n")
    add(c, "syntax-error", ENV_BASE.replace("  staging:", "  staging: [", 1))
    add(c, "duplicate-env", ENV_BASE + "  local: {}\n")


def scenario():
    c = "scenario"
    S = SCENARIO_BASE
    cases = [
        ("unknown-top-key", "endpoints:\n", "endpoint:\n"),
        ("unknown-kubelet-key", "  schedule-delay: 20ms\n", "  shedule-delay: 20ms\n"),
        ("bad-duration", "  ready-delay: 300ms\n", "  ready-delay: soon\n"),
        ("range-backwards", "start-delay: 100ms..300ms", "start-delay: 2s..1s"),
        ("range-three-parts", "start-delay: 100ms..300ms", "start-delay: 1ms..2ms..3ms"),
        ("grace-bad", "termination-grace: 1s", "termination-grace: forever"),
        ("propagation-list", "propagation-delay: 100ms", "propagation-delay: [100ms]"),
        ("namespaces-list", "namespaces:\n  shop:\n", "namespaces:\n  - shop:\n"),
        ("namespace-uppercase", "  shop:\n", "  Shop:\n"),
        ("deployment-uppercase", "      web: {", "      Web: {"),
        ("statefulset-underscore", "      db: {", "      my_db: {"),
        ("replicas-string", "web: { replicas: 3", "web: { replicas: three"),
        ("http-string", "http: true", "http: sometimes"),
        ("labels-list", "labels: { app: web }", "labels: [app, web]"),
        ("deployment-unknown-key", "http: true", "http: true, image: nginx"),
        ("duplicate-namespace", "    statefulsets:\n", "    statefulsets:\n      db2: {}\n  shop: {}\n    statefulsets:\n"),
        ("kubelet-in-workload-bad", "web: { replicas: 3,", "web: { kubelet: { start-delay: -1s }, replicas: 3,"),
        ("syntax-error", "labels: { app: db } }", "labels: { app: db } } }"),
    ]
    for name, old, new in cases:
        add(c, name, sub(old, new, S))
    add(c, "empty", "")
    add(c, "comments-only", "# scenario\n")
    add(c, "alias", "namespaces:\n  a: &x {}\n  b: *x\n")


def control_characters():
    c = "control-characters"
    for name, ch in [
        ("nul", "\x00"), ("soh", "\x01"), ("bel", "\x07"), ("backspace", "\x08"), ("vertical-tab", "\x0b"),
        ("form-feed", "\x0c"), ("escape", "\x1b"), ("delete", "\x7f"), ("c1-nel", "\x85"), ("c1-csi", "\x9b"),
        ("line-separator", "\u2028"), ("paragraph-separator", "\u2029"), ("bidi-override", "\u202e"),
        ("zero-width-space", "\u200b"),
    ]:
        add(c, f"{name}-in-name", sub("name: corpus-base", f"name: corpus{ch}base"))
    add(c, "nul-in-key", sub("repeat: 1\n", "rep\x00eat: 1\n"))
    add(c, "escape-sequence-in-quoted-name", sub("name: corpus-base", 'name: "corpus\\e[31mred"'))
    add(c, "nul-escape-in-target-name", BASE.replace("  worker:\n", '  "work\\0er":\n').replace("target: worker", 'target: "work\\0er"'))
    add(c, "ansi-in-probe-name", sub("  smoke:\n", '  "\\e[2Jsmoke":\n'))
    add(c, "cr-only-line-endings", BASE.replace("\n", "\r").replace("repeat: 1", "repeat: zero"))
    add(c, "control-in-selector", sub("      selector: app=web\n", '      selector: "app=w\\x01eb"\n'))


def long_lines():
    c = "long-lines"
    add(c, "long-name-50k", sub("name: corpus-base", "name: " + "a" * 50000))
    add(c, "long-key-50k", sub("repeat: 1\n", "repeat: 1\n" + "k" * 50000 + ": 1\n"))
    add(c, "long-selector", sub("      selector: app=web\n", "      selector: " + ",".join(["app=web"] * 5000) + ",bad key\n"))
    add(c, "long-url", sub('      url: "http://127.0.0.1:8080/healthz"\n', '      url: "ftp://' + "x" * 60000 + '"\n'))
    add(c, "long-comment-then-error", "#" + "c" * 80000 + "\n" + sub("repeat: 1\n", "repeat: zero\n"))
    add(c, "long-duration", set_duration("every", "1" * 10000 + "ms"))
    add(c, "long-line-error-at-end", sub("cooldown: 5s\n", "cooldown: 5s\nx: [" + "1, " * 20000 + "\n"))
    add(c, "many-probes-error-last", sub("repeat: 1\n", "repeat: 0\n").replace("probes:\n", "probes:\n" + "".join(f"  p{i}:\n    tcp: {{ address: \"127.0.0.1:{i + 1}\" }}\n" for i in range(1500)), 1))
    # Duplicate keys were once found by a linear search per key: quadratic in the keys.
    add(c, "many-keys-one-mapping", sub("repeat: 1\n", "repeat: 1\nextra:\n" + "".join(f"  k{i}: 1\n" for i in range(9000))))
    add(c, "long-multibyte-name", sub("name: corpus-base", "name: " + "é" * 20000))
    add(c, "long-cron", sub('schedule: "0 10 * * MON-FRI"', "schedule: '" + ",".join(["1"] * 20000) + " * * * * *'"))


def main():
    for gen in [yaml_syntax, tabs, wrong_types, unknown_keys, duplicate_keys, empty, negative_durations,
                zero_durations, huge_durations, unparseable_durations, invalid_selectors, invalid_cron,
                invalid_urls, invalid_names, non_utf8, bom, deep_nesting, alias_bombs, anchors,
                bad_references, bad_steps, bad_nodes, kind_mismatches, bad_interpolation, out_of_range, wrong_root,
                environments, scenario, control_characters, long_lines]:
        gen()
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    total = 0
    for cls, files in sorted(corpus.items()):
        os.makedirs(os.path.join(ROOT, cls))
        for name, data in files.items():
            with open(os.path.join(ROOT, cls, name + ".yaml"), "wb") as f:
                f.write(data)
            total += 1
    print(f"{total} files in {len(corpus)} classes", file=sys.stderr)


if __name__ == "__main__":
    main()
