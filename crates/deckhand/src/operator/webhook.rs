//! The mutating admission webhook `deckhand operator --webhook-listen` serves over TLS:
//! `POST /mutate-airequests` answers the API server's `AdmissionReview`s with
//! [`identity::admit`](super::identity::admit).
//!
//! Every replica serves it, leader or not: admission must not wait for an election. The
//! certificate and key are PEM files (a Secret mounted by cert-manager, or made by hand);
//! they are read again when either file changes, so a rotated certificate is
//! picked up without a restart.

use super::identity;
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The path the API server posts AdmissionReviews to (the MutatingWebhookConfiguration's
/// `clientConfig.service.path` / `url`).
pub const MUTATE_PATH: &str = "/mutate-airequests";
/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and with which certificate the webhook listens.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// The address to listen on (`0.0.0.0:8443` in a pod).
    pub listen: SocketAddr,
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the webhook cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The certificate or key cannot be read or used.
    #[error("cannot use the webhook's certificate {cert} with key {key}: {message}")]
    Certificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {address} for the webhook")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The webhook's routes, testable without a socket.
pub fn app() -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route("/healthz", get(|| async { "ok" }))
}

async fn mutate(
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let response = match request {
        Ok(request) => {
            let response = identity::admit(&request);
            tracing::info!(
                name = %request.name,
                namespace = request.namespace.as_deref().unwrap_or(""),
                operation = ?request.operation,
                user = request.user_info.username.as_deref().unwrap_or(""),
                allowed = response.allowed,
                patched = response.patch.is_some(),
                "admission review"
            );
            response
        }
        Err(_) => AdmissionResponse::invalid("the AdmissionReview has no request"),
    };
    Json(response.into_review())
}

/// Reads the certificate chain and key into a TLS server configuration.
///
/// # Errors
/// A file cannot be read, holds no certificate or key, or the key does not fit.
pub fn tls_config(cert: &Path, key: &Path) -> Result<ServerConfig, WebhookError> {
    let failed = |message: String| WebhookError::Certificate {
        cert: cert.to_owned(),
        key: key.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|error| failed(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| failed(error.to_string()))?;
    if chain.is_empty() {
        return Err(failed(
            "the certificate file holds no certificate".to_owned(),
        ));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|error| failed(error.to_string()))?;
    // ring explicitly: the process may link more than one rustls provider.
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| failed(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|error| failed(error.to_string()))?;
    // HTTP/1.1 only: the API server's webhook client uses it when h2 is not offered.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The webhook, bound and ready to serve.
pub struct Webhook {
    listener: TcpListener,
    certificates: Certificates,
    local: SocketAddr,
}

impl Webhook {
    /// Reads the certificate and binds `options.listen`.
    ///
    /// # Errors
    /// The certificate cannot be used or the address cannot be bound.
    pub async fn bind(options: WebhookOptions) -> Result<Self, WebhookError> {
        let config = tls_config(&options.cert, &options.key)?;
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| WebhookError::Listen {
                    address: options.listen,
                    source,
                })?;
        let local = listener.local_addr().unwrap_or(options.listen);
        Ok(Self {
            listener,
            certificates: Certificates::new(options.cert, options.key, config),
            local,
        })
    }

    /// The address it listens on (the port, when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` is cancelled; connections in flight finish first.
    pub async fn serve(self, shutdown: CancellationToken) {
        tracing::info!(address = %self.local, path = MUTATE_PATH, "admission webhook listening");
        let (sender, receiver) = mpsc::channel(64);
        let accepting = tokio::spawn(accept_loop(
            self.listener,
            self.certificates,
            sender,
            shutdown.clone(),
        ));
        let handshaken = Handshaken {
            receiver,
            local: self.local,
        };
        let served = axum::serve(handshaken, app().into_make_service())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        accepting.abort();
        if let Err(error) = served {
            tracing::warn!(%error, "the admission webhook stopped");
        }
    }
}

/// The TLS acceptor, rebuilt when the certificate or key file changes.
struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    /// When each file last changed, as of the files in service.
    modified: (Option<SystemTime>, Option<SystemTime>),
    acceptor: TlsAcceptor,
}

impl Certificates {
    fn new(cert: PathBuf, key: PathBuf, config: ServerConfig) -> Self {
        let modified = (modified(&cert), modified(&key));
        Self {
            cert,
            key,
            modified,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        }
    }

    /// The acceptor for the next connection: the files are read again when either
    /// changed on disk; a rotation caught half-written (unreadable, or a certificate that
    /// does not fit the key yet) keeps the old one and is tried again next time.
    fn current(&mut self) -> TlsAcceptor {
        let now = (modified(&self.cert), modified(&self.key));
        if now != self.modified {
            match tls_config(&self.cert, &self.key) {
                Ok(config) => {
                    self.acceptor = TlsAcceptor::from(Arc::new(config));
                    self.modified = now;
                    tracing::info!(cert = %self.cert.display(), "webhook certificate reloaded");
                }
                Err(error) => tracing::warn!(%error, "keeping the previous webhook certificate"),
            }
        }
        self.acceptor.clone()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

/// Accepts TCP connections and hands each to its own handshake, so one slow client does
/// not hold up the others; finished handshakes go to the server through `sender`.
async fn accept_loop(
    listener: TcpListener,
    mut certificates: Certificates,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(%error, "the webhook cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let acceptor = certificates.current();
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// The connections whose TLS handshake is done, as axum's [`Listener`](axum::serve::Listener).
struct Handshaken {
    receiver: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handshaken {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.receiver.recv().await {
            Some(connection) => connection,
            // The accept loop ended (shutdown): wait for the graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    async fn post(body: Value) -> (StatusCode, Value) {
        let response = app()
            .oneshot(
                Request::post(MUTATE_PATH)
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn a_create_is_answered_with_a_patch_for_the_same_uid() {
        let (status, body) = post(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "5f1c0b4e-0000-4000-8000-000000000001",
                "kind": {"group": "deckhand.dev", "version": "v1alpha1", "kind": "AIRequest"},
                "resource": {"group": "deckhand.dev", "version": "v1alpha1", "resource": "airequests"},
                "name": "scale-web", "namespace": "shop", "operation": "CREATE",
                "userInfo": {"username": "bob", "groups": ["team-web"]},
                "object": {"apiVersion": "deckhand.dev/v1alpha1", "kind": "AIRequest",
                           "metadata": {"name": "scale-web", "namespace": "shop"},
                           "spec": {"requestText": "scale web to 3", "user": "root", "namespace": "shop"}},
                "dryRun": false
            }
        }))
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        let response = &body["response"];
        assert_eq!(response["uid"], "5f1c0b4e-0000-4000-8000-000000000001");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        // kube-core writes the patch's bytes as a JSON array of numbers, which the API
        // server's decoder takes for a `[]byte` as well as base64 (the operator test
        // shows it on a real API server).
        let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).unwrap();
        let patch: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            patch
                .as_array()
                .unwrap()
                .contains(&json!({"op": "replace", "path": "/spec/user", "value": "bob"})),
            "{patch}"
        );
    }

    #[tokio::test]
    async fn a_review_without_a_request_is_invalid() {
        let (status, body) =
            post(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["response"]["allowed"], false);
    }

    #[test]
    fn a_missing_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let error =
            tls_config(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap_err();
        assert!(error.to_string().contains("tls.crt"), "{error}");
    }

    /// Writes a fresh self-signed certificate for 127.0.0.1 and its key; returns its DER.
    fn issue(cert: &Path, key: &Path) -> Vec<u8> {
        let pair = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        std::fs::write(cert, certificate.pem()).unwrap();
        std::fs::write(key, pair.serialize_pem()).unwrap();
        certificate.der().to_vec()
    }

    /// Accepts any server certificate: the test looks at which one was served.
    #[derive(Debug)]
    struct AnyCertificate(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

    impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &tokio_rustls::rustls::pki_types::ServerName<'_>,
            _ocsp_response: &[u8],
            _now: tokio_rustls::rustls::pki_types::UnixTime,
        ) -> Result<
            tokio_rustls::rustls::client::danger::ServerCertVerified,
            tokio_rustls::rustls::Error,
        > {
            Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &tokio_rustls::rustls::DigitallySignedStruct,
        ) -> Result<
            tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
            tokio_rustls::rustls::Error,
        > {
            tokio_rustls::rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &tokio_rustls::rustls::DigitallySignedStruct,
        ) -> Result<
            tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
            tokio_rustls::rustls::Error,
        > {
            tokio_rustls::rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The certificate the webhook at `address` serves to a new connection.
    async fn served(address: SocketAddr) -> Vec<u8> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        let stream = TcpStream::connect(address).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("127.0.0.1".try_into().unwrap(), stream)
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = issue(&cert, &key);
        let webhook = Webhook::bind(WebhookOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: cert.clone(),
            key: key.clone(),
        })
        .await
        .unwrap();
        let address = webhook.local_addr();
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(webhook.serve(shutdown.clone()));
        assert_eq!(served(address).await, first);

        // A renewal rewrites both files (cert-manager updates the mounted Secret).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = issue(&cert, &key);
        assert_ne!(first, second);
        assert_eq!(served(address).await, second);

        // A file caught half-written keeps the last good certificate in service.
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\ntruncat").unwrap();
        assert_eq!(served(address).await, second);

        shutdown.cancel();
        serving.await.unwrap();
    }
}
