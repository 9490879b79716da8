//! A real Kubernetes control plane for tests: etcd, kube-apiserver (RBAC on) and
//! kube-controller-manager, on free loopback ports, with a fresh PKI and etcd data dir.
//!
//! There is no scheduler and no kubelet: Pods are stored but never run. With the controller
//! manager, Deployments get ReplicaSets and Pods, ServiceAccounts get tokens, namespaces
//! finish terminating, garbage collection runs and the aggregated admin/edit/view roles are
//! filled, as in a real cluster.

use crate::error::{Error, Result};
use crate::process::{free_port, ServerProcess};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Kubernetes version `scripts/test.sh` builds.
pub const KUBERNETES_VERSION: &str = "v1.20.2";
/// How long the control plane may take to become ready on a loaded 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The admin client certificate's user; it is in `system:masters`.
pub const ADMIN_USER: &str = "deckhand-test-admin";

/// A running control plane. Stopped (controller manager, API server, then etcd) and
/// deleted on drop.
#[derive(Debug)]
pub struct KubeApiServer {
    controller_manager: ServerProcess,
    apiserver: ServerProcess,
    etcd: ServerProcess,
    port: u16,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

/// Where the binaries are.
struct Binaries {
    apiserver: PathBuf,
    controller_manager: PathBuf,
    etcd: PathBuf,
}

impl Binaries {
    fn find() -> Result<Self> {
        // Where scripts/install-kube-apiserver.sh puts them.
        let cache = crate::cache_dir()
            .join("kubernetes")
            .join(KUBERNETES_VERSION);
        let locate = |env_var: &'static str, what: &'static str, default: PathBuf| {
            let path = std::env::var_os(env_var)
                .map(PathBuf::from)
                .unwrap_or(default);
            match path.is_file() {
                true => Ok(path),
                false => Err(Error::BinaryMissing {
                    what,
                    path,
                    env_var,
                }),
            }
        };
        Ok(Self {
            apiserver: locate(
                "DECKHAND_KUBE_APISERVER",
                "kube-apiserver",
                cache.join("kube-apiserver"),
            )?,
            controller_manager: locate(
                "DECKHAND_KUBE_CONTROLLER_MANAGER",
                "kube-controller-manager",
                cache.join("kube-controller-manager"),
            )?,
            etcd: locate("DECKHAND_ETCD", "etcd", PathBuf::from("/usr/bin/etcd"))?,
        })
    }
}

/// The certificates and keys the control plane and its admin client use.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn generate(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
        let write = |name: &str, contents: String| {
            std::fs::write(dir.join(name), contents).map_err(|source| Error::Io {
                context: format!("writing {name}"),
                source,
            })
        };

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("deckhand-test-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        write("ca.key", ca_key.serialize_pem())?;
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
        write("ca.crt", ca.pem())?;

        let mut server = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "10.0.0.1".to_owned(),
        ])?;
        server.distinguished_name = name("kube-apiserver", None);
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        write("apiserver.crt", server.signed_by(&server_key, &ca)?.pem())?;
        write("apiserver.key", server_key.serialize_pem())?;

        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin.distinguished_name = name(ADMIN_USER, Some("system:masters"));
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        write("admin.crt", admin.signed_by(&admin_key, &ca)?.pem())?;
        write("admin.key", admin_key.serialize_pem())?;

        let service_accounts = KeyPair::generate()?;
        write("sa.key", service_accounts.serialize_pem())?;
        write("sa.pub", service_accounts.public_key_pem())?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name
}

impl KubeApiServer {
    /// Starts etcd, the API server and the controller manager, and waits until the API
    /// server is ready and the `default` ServiceAccount exists.
    pub async fn start() -> Result<Self> {
        let binaries = Binaries::find()?;
        let dir = crate::temp_dir("kube")?;
        let pki = Pki::generate(dir.path().join("pki"))?;
        let (etcd_client_port, etcd_peer_port, port) = (free_port()?, free_port()?, free_port()?);

        let etcd_client = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer = format!("http://127.0.0.1:{etcd_peer_port}");
        let mut etcd = Command::new(&binaries.etcd);
        etcd.args(["--name", "deckhand-test", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &etcd_client,
                "--advertise-client-urls",
                &etcd_client,
            ])
            .args([
                "--listen-peer-urls",
                &etcd_peer,
                "--initial-advertise-peer-urls",
                &etcd_peer,
            ])
            .arg(format!("--initial-cluster=deckhand-test={etcd_peer}"));
        let etcd = ServerProcess::spawn("etcd", etcd, &dir.path().join("etcd.log"))?;

        let flag = |name: &str, path: PathBuf| format!("--{name}={}", path.display());
        let mut apiserver = Command::new(&binaries.apiserver);
        apiserver
            .arg(format!("--etcd-servers={etcd_client}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={port}"))
            .arg(flag("tls-cert-file", pki.path("apiserver.crt")))
            .arg(flag("tls-private-key-file", pki.path("apiserver.key")))
            .arg(flag("client-ca-file", pki.path("ca.crt")))
            .arg(flag("service-account-key-file", pki.path("sa.pub")))
            .arg(flag("service-account-signing-key-file", pki.path("sa.key")))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--authorization-mode=Node,RBAC")
            .arg("--allow-privileged=true")
            // Keep everything the API server writes inside the temp dir.
            .arg(flag("cert-dir", dir.path().join("apiserver-certs")));
        let mut apiserver = ServerProcess::spawn(
            "kube-apiserver",
            apiserver,
            &dir.path().join("apiserver.log"),
        )?;

        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, port, &pki)?;
        let client = client_for(&kubeconfig).await?;

        let deadline = Instant::now() + READY_TIMEOUT;
        wait_until(&mut apiserver, deadline, || async {
            let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
            let body = client.request_text(request).await.ok()?;
            (body.trim() == "ok").then_some(())
        })
        .await?;

        let mut controller_manager = Command::new(&binaries.controller_manager);
        controller_manager
            .arg(flag("kubeconfig", kubeconfig.clone()))
            .arg(flag("service-account-private-key-file", pki.path("sa.key")))
            .arg(flag("root-ca-file", pki.path("ca.crt")))
            .arg(flag("cluster-signing-cert-file", pki.path("ca.crt")))
            .arg(flag("cluster-signing-key-file", pki.path("ca.key")))
            .args([
                "--use-service-account-credentials=true",
                "--leader-elect=false",
            ])
            .args([
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--port=0",
                "--controllers=*",
            ]);
        let mut controller_manager = ServerProcess::spawn(
            "kube-controller-manager",
            controller_manager,
            &dir.path().join("controller-manager.log"),
        )?;
        let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        wait_until(&mut controller_manager, deadline, || async {
            service_accounts
                .get_opt("default")
                .await
                .ok()
                .flatten()
                .map(|_| ())
        })
        .await?;

        Ok(Self {
            controller_manager,
            apiserver,
            etcd,
            port,
            kubeconfig,
            dir,
        })
    }

    /// A client authenticated as [`ADMIN_USER`] (in `system:masters`).
    pub async fn client(&self) -> Result<Client> {
        client_for(&self.kubeconfig).await
    }

    /// The kubeconfig file for the admin user, for processes under test (`KUBECONFIG`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's HTTPS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding the PKI, the etcd data and the logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's log, for diagnosing a failed test.
    pub fn apiserver_log(&self) -> &Path {
        self.apiserver.log()
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        // etcd last: stopped first, it leaves the API server retrying until killed.
        self.controller_manager.stop();
        self.apiserver.stop();
        self.etcd.stop();
    }
}

/// Polls `probe` until it yields `Some`, failing when `server` exits or `deadline` passes.
async fn wait_until<F, Fut>(
    server: &mut ServerProcess,
    deadline: Instant,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    loop {
        if probe().await.is_some() {
            return Ok(());
        }
        server.check_running()?;
        if Instant::now() > deadline {
            return Err(server.not_ready(format!("not ready within {READY_TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_kubeconfig(path: &Path, port: u16, pki: &Pki) -> Result<()> {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: deckhand-test\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: {ADMIN_USER}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: deckhand-test\n  context:\n    cluster: deckhand-test\n    user: {ADMIN_USER}\ncurrent-context: deckhand-test\n",
        ca = pki.path("ca.crt").display(),
        cert = pki.path("admin.crt").display(),
        key = pki.path("admin.key").display(),
    );
    std::fs::write(path, kubeconfig).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}

async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).map_err(Error::KubeConfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(Error::KubeConfig)?;
    Client::try_from(config).map_err(Error::KubeClient)
}
