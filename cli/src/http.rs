//! A small HTTP/1.1 client for the coordinator's endpoints and API, over `http://` or
//! `https://` (rustls; the system's roots, which `SSL_CERT_FILE` can replace for a private
//! CA), with a bearer token when one is configured.

use std::sync::Arc;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};

use lamina_common::config::{secret_var, Secret};

/// Where the coordinator answers and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    tls: bool,
    /// `host:port`.
    authority: String,
    host: String,
    /// A path prefix (a coordinator behind a proxy at `https://host/lamina`), no trailing `/`.
    base: String,
    token: Option<Secret>,
}

/// A response: status and body.
pub struct Reply {
    pub status: StatusCode,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// The API's one-line error, or the body itself.
    pub fn reason(&self) -> String {
        match self.json()["error"].as_str() {
            Some(e) => e.to_owned(),
            None => self.body.trim().to_owned(),
        }
    }
}

impl Endpoint {
    /// `url` is `http://host[:port][/prefix]` or `https://...`; the token comes from the
    /// first of `token_vars` that is set (each may be `<VAR>_FILE`).
    pub fn new(url: &str, token_vars: &[&str]) -> anyhow::Result<Endpoint> {
        let (tls, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => bail!("{url}: not an http:// or https:// address"),
        };
        let (authority, base) = rest.split_once('/').map_or((rest, ""), |(a, b)| (a, b));
        if authority.is_empty() || authority.contains('@') {
            bail!("{url}: no host (and no user:password@: the token comes from the environment)");
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host.to_owned(),
            _ => authority.to_owned(),
        };
        let authority = if authority.len() > host.len() { authority.to_owned() } else { format!("{host}:{}", if tls { 443 } else { 80 }) };
        let mut token = None;
        for var in token_vars {
            if let Some(t) = secret_var(var)? {
                token = Some(t);
                break;
            }
        }
        let base = base.trim_end_matches('/');
        let base = if base.is_empty() { String::new() } else { format!("/{base}") };
        Ok(Endpoint { tls, authority, host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), base, token })
    }

    /// One request; `body` is sent as JSON, `headers` besides.
    pub async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the coordinator at {}", self.authority))?;
        if self.tls {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone()).with_context(|| format!("{}: not a host name", self.host))?;
            let tls = tokio_rustls::TlsConnector::from(client_config()?)
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS with {} failed", self.authority))?;
            self.exchange(tls, method, path, body, headers).await
        } else {
            self.exchange(stream, method, path, body, headers).await
        }
    }

    async fn exchange<S>(&self, stream: S, method: Method, path: &str, body: Option<Vec<u8>>, headers: &[(&str, &str)]) -> anyhow::Result<Reply>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let uri = format!("{}{path}", self.base);
        let mut request = hyper::Request::builder().method(method).uri(&uri).header(hyper::header::HOST, &self.authority);
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = sender.send_request(request.body(Full::new(Bytes::from(body.unwrap_or_default())))?).await?;
        let status = response.status();
        let body = String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
        Ok(Reply { status, body })
    }

    /// A GET whose answer must be a success.
    pub async fn get(&self, path: &str) -> anyhow::Result<String> {
        let reply = self.send(Method::GET, path, None, &[]).await?;
        if !reply.status.is_success() {
            bail!("{path}: {}: {}", reply.status, reply.reason());
        }
        Ok(reply.body)
    }
}

/// The system's roots (or `SSL_CERT_FILE`'s).
fn client_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!("no trusted certificates found (set SSL_CERT_FILE to a PEM bundle)");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_with_their_defaults() {
        let e = Endpoint::new("https://lamina.example.org/fleet/", &[]).unwrap();
        assert_eq!((e.tls, e.authority.as_str(), e.host.as_str(), e.base.as_str()), (true, "lamina.example.org:443", "lamina.example.org", "/fleet"));
        let e = Endpoint::new("http://127.0.0.1:9090", &[]).unwrap();
        assert_eq!((e.tls, e.authority.as_str(), e.base.as_str()), (false, "127.0.0.1:9090", ""));
        for bad in ["127.0.0.1:9090", "ftp://x", "http://", "https://user:pw@host"] {
            assert!(Endpoint::new(bad, &[]).is_err(), "{bad}");
        }
    }
}
