//! Reports people read, end to end through the binary: the HTML page of a real drill on the
//! simulated cluster (its SVG timeline checked by coordinates, and a headless browser
//! screenshot), JUnit XML, the CI summary, the regression gate's exit codes against baseline
//! records, and `firedrill report` over a folder of generated records.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::{firedrill, only_report};
use quick_xml::events::Event as XmlEvent;
use quick_xml::{Reader, XmlVersion};
use serde_json::Value;

/// A short drill on the simulated shop: three trials, no cooldown.
const DRILL: &str = r#"name: reports-drill
description: Kill one of three checkout pods; the endpoint and the deployment must heal.
simulation: { scenario: sim/shop.yaml }
targets:
  checkout-pods:
    kubernetes: { namespace: shop, selector: app=checkout, workload: deployment/checkout, count: 1 }
probes:
  checkout-http:
    http: { url: "${sim.shop.checkout}/", expect-status: 200, timeout: 500ms }
    every: 100ms
    every-during: 10ms
  checkout-ready:
    kubernetes: { deployment: shop/checkout, ready: all }
    every: 500ms
steady-state: [checkout-http, checkout-ready]
faults:
  - pod-kill: { target: checkout-pods, grace-period: 0s }
recovery: { objective: 5s, stable-for: 500ms, timeout: 30s }
repeat: 3
cooldown: 0s
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    record: Value,
    json: PathBuf,
}

fn drill_file(dir: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("sim")).unwrap();
    std::fs::copy(
        manifest.join("experiments/sim/shop.yaml"),
        dir.join("sim/shop.yaml"),
    )
    .unwrap();
    let file = dir.join("reports-drill.yaml");
    std::fs::write(&file, DRILL).unwrap();
    file
}

fn run_drill(root: &Path, extra: &[&str]) -> Output {
    let file = drill_file(root);
    let out = firedrill()
        .arg("run")
        .arg(&file)
        .arg("--report-dir")
        .arg(root.join("reports"))
        .args(["--seed", "7"])
        .args(extra)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// One real run shared by the tests that only read its outputs.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let out = run_drill(
            &root,
            &[
                "--junit",
                root.join("junit.xml").to_str().unwrap(),
                "--summary",
                root.join("summary.md").to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let record = only_report(&root.join("reports"));
        let json = root
            .join("reports/reports-drill/local")
            .join(format!("{}.json", record["run_id"].as_str().unwrap()));
        Fixture {
            _dir: dir,
            root,
            record,
            json,
        }
    })
}

/// An element of the SVG with its attributes.
#[derive(Debug)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    /// `data-probe` of the enclosing `<g>`.
    parent_probe: Option<String>,
}

impl El {
    fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn num(&self, k: &str) -> f64 {
        self.attr(k)
            .unwrap_or_else(|| panic!("{k} on {self:?}"))
            .parse()
            .unwrap()
    }
}

/// Parse one `<svg>…</svg>` as XML: every element, with its enclosing group.
fn svg_elements(svg: &str) -> Vec<El> {
    let mut r = Reader::from_str(svg);
    let mut out = Vec::new();
    let mut stack: Vec<Option<String>> = Vec::new();
    loop {
        let ev = r.read_event().expect("the timeline SVG is well-formed XML");
        let (e, empty) = match &ev {
            XmlEvent::Start(e) => (e, false),
            XmlEvent::Empty(e) => (e, true),
            XmlEvent::End(_) => {
                stack.pop();
                continue;
            }
            XmlEvent::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
        let attrs: Vec<(String, String)> = e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.normalized_value(XmlVersion::Implicit1_0)
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect();
        let parent_probe = stack.last().cloned().flatten();
        let el = El {
            name,
            attrs,
            parent_probe,
        };
        if !empty {
            stack.push(el.attr("data-probe").map(str::to_string));
        }
        out.push(el);
    }
    out
}

fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(a) = rest.find("<svg") {
        let z = rest[a..].find("</svg>").unwrap() + a + "</svg>".len();
        out.push(&rest[a..z]);
        rest = &rest[z..];
    }
    out
}

/// Times are written with microsecond precision and coordinates with 0.01 units.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.006
}

#[test]
fn html_report_draws_one_band_per_probe_and_markers_at_their_times() {
    let f = fixture();
    let html = std::fs::read_to_string(f.json.with_extension("html")).unwrap();
    assert!(
        !html.contains("http://") || !html.contains("<link"),
        "no fetches"
    );
    assert!(!html.contains("<script"), "no scripts");
    assert!(html.contains("id=\"outcome\">passed<"));
    assert!(html.contains("MTTR over n=3"), "summary names its n");
    let trials = f.record["trials"].as_array().unwrap();
    let pictures = svgs(&html);
    assert_eq!(pictures.len(), trials.len(), "one timeline per trial");
    let probes: Vec<&str> = f.record["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for (svg, trial) in pictures.iter().zip(trials) {
        let els = svg_elements(svg);
        let root = &els[0];
        assert_eq!(root.name, "svg");
        let (t0, t1, x0, w) = (
            root.num("data-t0"),
            root.num("data-t1"),
            root.num("data-x0"),
            root.num("data-width"),
        );
        let x = |t: f64| x0 + (t - t0) / (t1 - t0) * w;

        // One band per probe, each coloured by its trace's stretches.
        let bands: Vec<&str> = els
            .iter()
            .filter(|e| e.attr("class") == Some("band"))
            .map(|e| e.attr("data-probe").unwrap())
            .collect();
        assert_eq!(bands, probes);
        for p in trial["probes"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let stretches = p["trace"]["stretches"].as_array().unwrap();
            let rects: Vec<&El> = els
                .iter()
                .filter(|e| e.parent_probe.as_deref() == Some(name))
                .filter(|e| e.attr("class").is_some_and(|c| c.starts_with("stretch")))
                .collect();
            assert_eq!(rects.len(), stretches.len(), "{name}");
            for (r, s) in rects.iter().zip(stretches) {
                let ok = s["ok"].as_bool().unwrap();
                assert_eq!(
                    r.attr("class").unwrap(),
                    if ok { "stretch ok" } else { "stretch fail" }
                );
                let start = s["first"]["start_s"].as_f64().unwrap();
                assert!(close(r.num("data-start"), start));
                assert!(close(r.num("x"), x(start)), "{r:?} vs {}", x(start));
            }
        }

        // The fault marker at the accepted instant, detection and recovery where measured.
        let t_inject = trial["t_inject_s"].as_f64().unwrap();
        let marker = |class: &str| {
            els.iter()
                .find(|e| e.attr("class") == Some(&format!("marker {class}")))
                .unwrap_or_else(|| panic!("no {class} marker"))
        };
        let line_x = |class: &str| {
            let g = marker(class);
            let idx = els.iter().position(|e| std::ptr::eq(e, g)).unwrap();
            els[idx + 1].num("x1")
        };
        let accepted = trial["faults"][0]["accepted_s"].as_f64().unwrap();
        assert!(close(marker("inject").num("data-t"), accepted));
        assert!(close(line_x("inject"), x(accepted)));
        let ttd = trial["verdict"]["ttd_s"].as_f64().unwrap();
        assert!(close(line_x("detected"), x(t_inject + ttd)));
        let ttr = trial["verdict"]["ttr"]["estimate_s"].as_f64().unwrap();
        assert!(close(marker("recovered").num("data-t"), t_inject + ttr));
        assert!(close(line_x("recovered"), x(t_inject + ttr)));
        // The killed pod's recovery phases, ending when its replacement was ready.
        let ready = trial["pod_recovery"][0]["ready_s"].as_f64().unwrap();
        let readying = els
            .iter()
            .find(|e| e.attr("class") == Some("phase readying"))
            .unwrap();
        assert!(close(readying.num("data-end"), t_inject + ready));
    }
}

#[test]
fn html_report_reads_well_in_a_headless_browser() {
    let f = fixture();
    let html = f.json.with_extension("html");
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "chromium is missing under CI: scripts/install-reports.sh installs it"
        );
        eprintln!("skipped: chromium is not installed (scripts/install-reports.sh)");
        return;
    };
    let out_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("run-report.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    assert!(png.len() > 20_000, "the page rendered something");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn junit_has_a_testcase_per_trial_and_probe_with_ttr_properties() {
    let f = fixture();
    let xml = std::fs::read_to_string(f.root.join("junit.xml")).unwrap();
    let mut r = Reader::from_str(&xml);
    let mut cases = Vec::new();
    let mut props = Vec::new();
    let mut failures = 0;
    loop {
        match r.read_event().expect("valid XML") {
            XmlEvent::Start(e) | XmlEvent::Empty(e) => {
                let get = |k: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == k)
                        .map(|a| {
                            a.normalized_value(XmlVersion::Implicit1_0)
                                .unwrap()
                                .into_owned()
                        })
                };
                match e.name().as_ref() {
                    b"testcase" => cases.push(get(b"name").unwrap()),
                    b"property" => props.push(get(b"name").unwrap()),
                    b"failure" => failures += 1,
                    _ => {}
                }
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    let expected: Vec<String> = (1..=3)
        .flat_map(|t| {
            [
                format!("trial {t}"),
                format!("trial {t} / probe checkout-http"),
                format!("trial {t} / probe checkout-ready"),
            ]
        })
        .collect();
    assert_eq!(cases, expected);
    assert_eq!(failures, 0);
    assert!(props.iter().filter(|p| *p == "ttr_s").count() >= 3);
    assert!(props.iter().any(|p| p == "ttd_s"));
    let summary = std::fs::read_to_string(f.root.join("summary.md")).unwrap();
    assert!(
        summary.contains("reports-drill [local] — passed"),
        "{summary}"
    );
    assert!(summary.contains("| 3 | recovered |"), "{summary}");
}

/// Baseline records: the fixture's record with every trial TTR multiplied by `factor(i)`.
fn baseline(dir: &Path, runs: usize, factor: impl Fn(usize) -> f64) {
    let f = fixture();
    let d = dir.join("reports-drill/local");
    std::fs::create_dir_all(&d).unwrap();
    let mut k = 0;
    for i in 0..runs {
        let mut r = f.record.clone();
        let id = format!("baseline-{i}");
        r["run_id"] = id.clone().into();
        for t in r["trials"].as_array_mut().unwrap() {
            let ttr = &mut t["verdict"]["ttr"];
            for key in ["estimate_s", "lower_s", "upper_s"] {
                let v = ttr[key].as_f64().unwrap() * factor(k);
                ttr[key] = v.into();
            }
            k += 1;
        }
        std::fs::write(d.join(format!("{id}.json")), r.to_string()).unwrap();
    }
}

#[test]
fn regression_gate_fails_a_slowdown_and_passes_noise() {
    let _ = fixture();
    // Recovery used to take 40% of today's: today is 2.5x slower than the baseline.
    let fast = tempfile::tempdir().unwrap();
    baseline(fast.path(), 4, |_| 0.4);
    let dir = tempfile::tempdir().unwrap();
    let out = run_drill(
        dir.path(),
        &[
            "--baseline",
            fast.path().to_str().unwrap(),
            "--max-regression",
            "20%",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("recovery regressed"), "{stdout}");

    // The same recovery times within ±3%: noise, exit 0 with a note.
    let same = tempfile::tempdir().unwrap();
    baseline(same.path(), 4, |k| 0.97 + 0.06 * ((k % 5) as f64 / 4.0));
    let dir = tempfile::tempdir().unwrap();
    let out = run_drill(dir.path(), &["--baseline", same.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("no regression"), "{stdout}");

    // A single baseline file works too; a missing one is invalid input.
    let file = same.path().join("reports-drill/local/baseline-0.json");
    let out = firedrill()
        .args(["run", "experiments/quickstart.yaml", "--baseline"])
        .arg(same.path().join("missing.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(file.exists());
}

/// A folder of generated records for `firedrill report`.
fn history_folder(dir: &Path) {
    let f = fixture();
    let now = chrono::Utc::now();
    let write = |exp: &str, env: &str, i: usize, days_ago: f64, ttr: f64| {
        let mut r = f.record.clone();
        let id = format!("{exp}-{env}-{i}");
        r["run_id"] = id.clone().into();
        r["experiment"]["name"] = exp.into();
        r["environment"] = env.into();
        let at = now - chrono::Duration::milliseconds((days_ago * 86_400_000.0) as i64);
        r["started_at"] = at.to_rfc3339().into();
        for t in r["trials"].as_array_mut().unwrap() {
            t["verdict"]["ttr"]["estimate_s"] = ttr.into();
        }
        let d = dir.join(exp).join(env);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{id}.json")), r.to_string()).unwrap();
    };
    // checkout in staging: daily, getting slower (1s → 2.4s).
    for i in 0..8 {
        write(
            "checkout",
            "staging",
            i,
            8.0 - i as f64,
            1.0 + 0.2 * i as f64,
        );
    }
    // checkout in production: steady, but the last run was 10 days ago.
    for i in 0..5 {
        write(
            "checkout",
            "production",
            i,
            14.0 - i as f64,
            1.5 + 0.01 * (i % 2) as f64,
        );
    }
    // db failover: getting faster.
    for i in 0..6 {
        write("db-failover", "staging", i, 6.0 - i as f64, 9.0 - i as f64);
    }
    std::fs::write(dir.join("checkout/staging/garbage.json"), "{").unwrap();
}

#[test]
fn history_reports_mttr_trends_and_overdue_drills() {
    let dir = tempfile::tempdir().unwrap();
    history_folder(dir.path());
    let out = firedrill()
        .arg("report")
        .arg(dir.path())
        .args(["--format", "markdown", "--overdue", "7d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let md = String::from_utf8(out.stdout).unwrap();
    let row = |exp: &str, env: &str| -> Vec<String> {
        md.lines()
            .find(|l| l.starts_with(&format!("| {exp} | {env} |")))
            .unwrap_or_else(|| panic!("no row for {exp} {env}:\n{md}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    // | drill | env | runs | last run | MTTR (n) | median | p90 | max | trend | overdue |
    let staging = row("checkout", "staging");
    assert_eq!(staging[3], "8 (8 passed)");
    assert!(staging[5].ends_with("(n=24)"), "{staging:?}");
    assert_eq!(staging[8], "2.400s");
    assert_eq!(staging[9], "slower");
    assert_eq!(staging[10], "no");
    let prod = row("checkout", "production");
    assert_eq!(prod[9], "steady");
    assert!(prod[10].starts_with("OVERDUE (10d"), "{prod:?}");
    let db = row("db-failover", "staging");
    assert_eq!(db[9], "faster");
    assert!(
        md.contains("recovery is getting slower: fitted 1.000s → 2.400s"),
        "{md}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("garbage.json"),
        "unreadable records are named"
    );

    // The HTML index: one TTR-over-time chart per drill, a dot per recovered trial.
    let page = dir.path().join("index.html");
    let out = firedrill()
        .arg("report")
        .arg(dir.path())
        .args(["--format", "html", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let html = std::fs::read_to_string(&page).unwrap();
    let charts = svgs(&html);
    assert_eq!(charts.len(), 3);
    let dots = svg_elements(charts[1])
        .into_iter()
        .filter(|e| e.attr("class") == Some("run"))
        .count();
    assert_eq!(dots, 24, "checkout/staging: 8 runs × 3 trials");
}

/// `report --format json|yaml`: the same numbers as the table, as data, and the YAML is the
/// JSON's structure exactly.
#[test]
fn history_as_json_and_yaml_carries_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    history_folder(dir.path());
    let read = |format: &str| {
        let out = firedrill()
            .arg("report")
            .arg(dir.path())
            .args(["--format", format, "--overdue", "7d"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        out.stdout
    };
    let json: serde_json::Value = serde_json::from_slice(&read("json")).unwrap();
    let yaml: serde_json::Value = serde_yaml::from_slice(&read("yaml")).unwrap();
    // Two invocations, two "now"s: overdue and the fitted slope move by the time between them.
    fn settled(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(k, _)| *k != "overdue_s")
                .map(|(k, v)| (k.clone(), settled(v)))
                .collect(),
            serde_json::Value::Array(a) => a.iter().map(settled).collect(),
            serde_json::Value::Number(n) if n.is_f64() => {
                serde_json::json!((n.as_f64().unwrap() * 1e6).round() / 1e6)
            }
            v => v.clone(),
        }
    }
    assert_eq!(settled(&json), settled(&yaml));
    let drill = |exp: &str, env: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|d| d["experiment"] == exp && d["environment"] == env)
            .unwrap_or_else(|| panic!("{exp} {env}: {json}"))
            .clone()
    };
    let staging = drill("checkout", "staging");
    assert_eq!(staging["runs"], 8);
    assert_eq!(staging["passed"], 8);
    assert_eq!(staging["mttr"]["n"], 24);
    assert_eq!(staging["mttr"]["max_s"], 2.4);
    assert_eq!(staging["trend"]["direction"], "slower");
    assert!(staging["overdue_s"].is_null());
    let prod = drill("checkout", "production");
    assert_eq!(prod["trend"]["direction"], "steady");
    let overdue = prod["overdue_s"].as_f64().unwrap();
    assert!((overdue / 86_400.0 - 10.0).abs() < 0.1, "{overdue}");
    assert_eq!(
        drill("db-failover", "staging")["trend"]["direction"],
        "faster"
    );
}
