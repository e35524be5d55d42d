//! The arguments of `run`, shared by the run itself and its CI outputs.

use std::path::PathBuf;
use std::time::Duration;

use crate::workspace::{self, Selection};

#[derive(clap::Args)]
pub(in crate::cli) struct RunArgs {
    pub(in crate::cli) file: PathBuf,
    #[command(flatten)]
    pub(in crate::cli) env: Selection,
    /// Where reports go: <dir>/<experiment>/<environment>/<run-id>.{json,md,html}.
    #[arg(long, default_value = "reports")]
    pub(in crate::cli) report_dir: PathBuf,
    /// Seed for every random choice (recorded in the report); default: random.
    #[arg(long)]
    pub(in crate::cli) seed: Option<u64>,
    /// Override the experiment's `repeat` (number of trials, 1 to 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(in crate::cli) repeat: Option<u32>,
    /// How long to wait for the steady state before injecting and after reverting.
    #[arg(long, default_value = "30s", value_parser = workspace::parse_steady_state_timeout)]
    pub(in crate::cli) steady_state_timeout: Duration,
    /// Also write JUnit XML: one testcase per trial and per probe, TTR/TTD as properties.
    #[arg(long, value_name = "FILE")]
    pub(in crate::cli) junit: Option<PathBuf>,
    /// Append a Markdown summary for a CI job (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    pub(in crate::cli) summary: Option<PathBuf>,
    /// Fail (exit 1) when recovery is slower than these records (a .json file or a reports
    /// folder; same experiment and environment) by more than --max-regression, with p < 0.05.
    #[arg(long, value_name = "FILE|DIR")]
    pub(in crate::cli) baseline: Option<PathBuf>,
    /// Plain progress lines even on a terminal (no live view, no game-day keys).
    #[arg(long)]
    pub(in crate::cli) no_live: bool,
    /// The slowdown the regression gate allows.
    #[arg(long, default_value = "20%", value_parser = crate::analysis::regression::parse_margin)]
    pub(in crate::cli) max_regression: f64,
    /// Confirm a run in a protected environment without the interactive prompt.
    #[arg(long)]
    pub(in crate::cli) yes: bool,
    /// Push this run's metrics to a Prometheus Pushgateway (e.g. http://127.0.0.1:9091).
    #[arg(long, value_name = "URL")]
    pub(in crate::cli) pushgateway: Option<String>,
    /// Run although the environment's promotion gate (`promote-from`) holds this drill.
    #[arg(long)]
    pub(in crate::cli) skip_promotion_gate: bool,
    /// Notifications of this run (started, finished, aborted, objective missed, fault left in
    /// place), as `schedule` sends them.
    #[command(flatten)]
    pub(in crate::cli) webhooks: crate::schedule::notify::WebhookArgs,
    /// Run as a scheduled drill: refuse (exit 3, nothing touched) outside the environment's
    /// windows and in its blackouts, as the schedule daemon would. `deploy`'s CronJobs pass it.
    #[arg(long)]
    pub(in crate::cli) scheduled: bool,
    /// Talk to the cluster this process runs in — its pod's service account, or the current
    /// context of $KUBECONFIG when set — instead of the environment's `kube-context`, which a
    /// pod has no kubeconfig for. `deploy`'s CronJobs pass it. In a protected environment it
    /// stands for the kube-context check: the CronJob was deployed into that cluster for it.
    #[arg(long)]
    pub(in crate::cli) in_cluster: bool,
    /// Write the run's result (run id, exit code, report path) to FILE as JSON once its report
    /// exists: for programs that start drills, like `firedrill schedule`.
    #[arg(long, value_name = "FILE")]
    pub(in crate::cli) result_file: Option<PathBuf>,
}
