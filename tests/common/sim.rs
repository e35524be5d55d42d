//! The embedded simulated cluster for tests that drive the binary: started on a runtime of its
//! own (the test thread stays synchronous), with a temp dir for kubeconfigs, environments and
//! reports; shut down on drop.

use firedrill::sim::{SimCluster, SimHandle};

pub struct Sim {
    pub rt: tokio::runtime::Runtime,
    handle: Option<SimHandle>,
    pub dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(sim) = self.handle.take() {
            self.rt.block_on(sim.shutdown());
        }
    }
}

impl Sim {
    /// Start the scenario (YAML) with `seed` on 127.0.0.1.
    pub fn new(scenario: &str, seed: u64) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let scenario = firedrill::sim::parse_scenario(scenario).unwrap();
        let handle = rt
            .block_on(SimCluster::start(
                scenario,
                "127.0.0.1:0".parse().unwrap(),
                seed,
            ))
            .unwrap();
        Sim {
            rt,
            handle: Some(handle),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn handle(&self) -> &SimHandle {
        self.handle.as_ref().expect("the simulated cluster runs")
    }

    /// Write the kubeconfig `file` in the temp dir for a service account's `token`: context,
    /// cluster and user `firedrill-sim`, over HTTPS with the cluster's certificate as its
    /// authority, and no admin credentials anywhere.
    pub fn write_token_kubeconfig(&self, file: &str, token: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, self.handle().kubeconfig_with_token(token)).unwrap();
        path
    }

    /// Write the kubeconfig `file` in the temp dir: one context per name in `contexts`, all on
    /// this cluster, `current` the current one.
    pub fn write_kubeconfig(&self, file: &str, contexts: &[&str], current: &str) {
        let contexts: String = contexts
            .iter()
            .map(|c| format!("- name: {c}\n  context: {{ cluster: sim, user: u }}\n"))
            .collect();
        std::fs::write(
            self.dir.path().join(file),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster: {{ server: \"{url}\" }}\ncontexts:\n{contexts}users:\n- name: u\n  user: {{}}\ncurrent-context: {current}\n",
                url = self.handle().api_url()
            ),
        )
        .unwrap();
    }
}
