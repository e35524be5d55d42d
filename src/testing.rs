//! Support shared by the unit tests.

use std::net::SocketAddr;

/// A loopback address that refuses connections for as long as the returned socket lives.
///
/// The socket is bound but never listens, so a connection gets a reset (`ECONNREFUSED`) and,
/// unlike binding a listener and dropping it, the port cannot be handed to a test running in
/// parallel in the meantime (CI once saw such a reused port answer with a reset mid-request).
pub(crate) fn refusing_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind("127.0.0.1:0".parse().expect("a loopback address"))
        .expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("bound address");
    (socket, addr)
}
