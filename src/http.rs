//! The HTTP client every outbound connection uses (replay, the recording proxy's upstream, the
//! taps): a custom CA bundle where the site has an internal CA, certificate checks on unless
//! turned off by name, no redirects followed, and error texts with their whole cause chain.

use std::path::Path;
use std::time::Duration;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read ca_bundle {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("ca_bundle {path}: {message}")]
    Bundle {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// Builds a client. No overall timeout: streams last as long as the server makes them.
pub fn client(
    ca_bundle: Option<&Path>,
    accept_invalid_certs: bool,
) -> Result<reqwest::Client, ClientError> {
    Ok(builder(ca_bundle, accept_invalid_certs)?.build()?)
}

/// As [`client`], keeping no connection idle: each request goes on a fresh one (the retry of a
/// request whose pooled connection the server had closed).
pub fn unpooled_client(
    ca_bundle: Option<&Path>,
    accept_invalid_certs: bool,
) -> Result<reqwest::Client, ClientError> {
    let b = builder(ca_bundle, accept_invalid_certs)?;
    Ok(b.pool_max_idle_per_host(0).build()?)
}

fn builder(
    ca_bundle: Option<&Path>,
    accept_invalid_certs: bool,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Under open-loop load every in-flight request holds a connection; keeping them all
        // idle-pooled avoids reconnecting (and measuring TCP setup) on the next send.
        .pool_max_idle_per_host(usize::MAX)
        // A 3xx is recorded as it is: a body with a model key never follows a redirect to
        // another origin.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true);
    if let Some(path) = ca_bundle {
        let bundle = |message: String| ClientError::Bundle {
            path: path.into(),
            message,
        };
        let pem = std::fs::read(path).map_err(|source| ClientError::Read {
            path: path.into(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bundle(e.to_string()))?;
        if certs.is_empty() {
            return Err(bundle("no PEM certificate in it".into()));
        }
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    if accept_invalid_certs {
        b = b.danger_accept_invalid_certs(true);
    }
    Ok(b)
}

/// An error with every cause after it (`a: b: c`): reqwest's own text hides the cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
