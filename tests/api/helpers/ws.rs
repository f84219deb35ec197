//! A WebSocket client for the tests: connect with a token and Origin, read JSON, subscribe.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message},
    MaybeTlsStream, WebSocketStream,
};

use super::TestApp;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(app: &TestApp, token: Option<&str>, origin: Option<&str>) -> Result<Ws, u16> {
    let mut req = format!("ws://127.0.0.1:{}/ws", app.port)
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

pub async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(t) = msg {
            let value: Value = serde_json::from_str(&t).unwrap();
            // Alert notices are pushed to every connection whenever an alert of its scope
            // changes, between any two figure messages; the figure tests wait past them.
            if value["type"] == "alert" {
                continue;
            }
            return Some(value);
        }
    }
}

pub async fn subscribe(ws: &mut Ws, id: &str, scope: &str, resume: Option<Value>) {
    let mut msg = json!({"type": "subscribe", "id": id, "scope": scope, "metrics": []});
    if let Some(r) = resume {
        msg["resume"] = r;
    }
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
}

/// A client that will stop reading: a 4 KiB receive buffer, so the server's send buffer fills
/// soon. Returns it and its local port (to find the server's side of the connection).
pub async fn slow_reader(app: &TestApp) -> (Ws, u16) {
    slow_reader_at(app.port, app.admin_token()).await
}

/// A WebSocket to the server on `port` whose client reads nothing (a 4 KiB receive buffer)
/// and its local port.
pub async fn slow_reader_at(port: u16, token: &str) -> (Ws, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let client_port = stream.local_addr().unwrap().port();
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    (ws, client_port)
}
