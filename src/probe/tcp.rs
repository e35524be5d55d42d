//! `tcp` probe: healthy when a TCP connection is accepted within the timeout.

use std::time::Duration;

use tokio::net::TcpStream;

use super::Reason;
use crate::experiment::TcpProbe;

pub struct TcpChecker {
    address: String,
    timeout: Duration,
}

impl TcpChecker {
    pub fn new(spec: &TcpProbe) -> Self {
        TcpChecker {
            address: spec.address.clone(),
            timeout: spec.timeout,
        }
    }

    pub async fn check(&mut self) -> Result<(), Reason> {
        match tokio::time::timeout(self.timeout, TcpStream::connect(&self.address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect: {e}")),
            Err(_) => Err(format!(
                "connect timed out after {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }
}
