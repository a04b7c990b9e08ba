//! The cluster's TLS: a CA kept in the secrets file, and each node's key and certificate,
//! issued on the node by hanode from that CA, and issued again when they no longer fit (a new
//! CA, other names, less than 30 days left). Every daemon of the node uses the one certificate,
//! for serving and as a client; each daemon user gets its own copy of the key.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::config::secrets::Secret;
use crate::units::DaemonKind;

pub const DIR: &str = "/etc/hanode/tls";
/// The CA certificate every daemon trusts.
pub const CA: &str = "/etc/hanode/tls/ca.crt";
pub const CERT: &str = "/etc/hanode/tls/node.crt";
/// root's copy of the key: hanode's own client identity.
pub const KEY: &str = "/etc/hanode/tls/node.key";

const CA_DAYS: i64 = 3650;
const NODE_DAYS: i64 = 397;
/// A run issues a new node certificate when fewer days than this are left; `check` and
/// `status` warn from then on.
pub const RENEW_DAYS: i64 = 30;

/// The key copy a daemon reads, owned by its user: daemons refuse keys others can read,
/// and PostgreSQL one that its own user cannot.
pub fn key_path(kind: DaemonKind) -> PathBuf {
    copy_path(kind, "key")
}

/// The certificate a daemon reads: its own copy, written in the same step as its key, so that
/// a daemon that rereads both at each handshake (etcd) never pairs a new certificate with its
/// old key while a run is between the two.
pub fn cert_path(kind: DaemonKind) -> PathBuf {
    copy_path(kind, "crt")
}

/// Each daemon's own copy, owned by its user: none reads root's.
fn copy_path(kind: DaemonKind, ext: &str) -> PathBuf {
    PathBuf::from(DIR).join(format!("{}.{ext}", kind.unit().trim_end_matches(".service")))
}

/// The CA: a certificate and its private key, as PEM.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: Secret,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(<key hidden>)")
    }
}

/// A CA rotation under way (the secrets file's `[tls]`), one of three steps `hanode secrets
/// rotate-ca` takes, each rolled out by `hanode init` on every node: the next CA is trusted
/// before any node presents its certificates; then it issues while the old one is still
/// trusted; then the old one is dropped. No two nodes ever stop trusting each other.
#[derive(Debug, Clone, Default)]
pub enum Rotation {
    #[default]
    None,
    /// `next_ca_cert` / `next_ca_key`: trusted, not yet issuing.
    Next(Ca),
    /// `old_ca_cert`: no longer issuing, trusted until every node has a certificate of the new CA.
    Old(String),
}

/// The certificates every daemon of the node trusts: the issuing CA, and the rotation's other.
pub fn trusted(ca: &Ca, rotation: &Rotation) -> String {
    // Each PEM ends its own line, whatever the secrets file kept of its last newline.
    let line = |pem: &str| format!("{}\n", pem.trim_end());
    match rotation {
        Rotation::None => line(&ca.cert_pem),
        Rotation::Next(next) => line(&ca.cert_pem) + &line(&next.cert_pem),
        Rotation::Old(old) => line(&ca.cert_pem) + &line(old),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn dn(cn: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "hanode");
    if let Some(cn) = cn {
        d.push(DnType::CommonName, cn);
    }
    d
}

/// A new cluster CA, valid ten years (ECDSA P-256).
pub fn generate_ca() -> anyhow::Result<Ca> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::default();
    // A name of its own: OpenSSL's clients (libpq, Python's ssl) pick a CA of the bundle by
    // its subject, so during a rotation two CAs made the same day must not share one.
    let tag: u32 = rand::RngExt::random(&mut rand::rng());
    p.distinguished_name = dn(Some(&format!("hanode cluster CA {} {tag:08x}", now().date())));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = now() - Duration::hours(1);
    p.not_after = now() + Duration::days(CA_DAYS);
    let cert = p.self_signed(&key)?;
    Ok(Ca { cert_pem: cert.pem(), key_pem: Secret::new(key.serialize_pem()) })
}

/// What a node's certificate names (as subject alternative names): its member name and
/// address, loopback (daemons talk to their own node there) and, on PostgreSQL members, the
/// VIP (clients verify it with `sslmode=verify-full`). No CommonName: etcd's gateway refuses a
/// login from a client whose certificate has one (CVE-2018-16886), and Patroni logs in there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

pub fn names(cx: &crate::context::Context) -> Names {
    let me = cx.node();
    let mut ips: BTreeSet<IpAddr> =
        [me.address, IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)].into_iter().collect();
    if let (crate::config::Role::Postgres, Some(v)) = (cx.role, &cx.site.vip) {
        ips.insert(v.address);
    }
    let mut dns: BTreeSet<String> = [me.name.clone(), "localhost".to_string()].into_iter().collect();
    // Consul's agents check a server's certificate for this name (verify_server_hostname).
    if cx.site.dcs.kind == crate::config::DcsKind::Consul && crate::dcs::is_server(cx) {
        dns.insert(format!("server.{}.consul", crate::dcs::datacenter(&cx.site)));
    }
    Names { dns, ips }
}

/// A new key and certificate for a node, signed by the CA: for servers and clients alike
/// (etcd peers are both).
pub fn issue(ca: &Ca, names: &Names) -> anyhow::Result<(String, Secret)> {
    let ca_key = KeyPair::from_pem(ca.key_pem.expose())
        .map_err(|e| anyhow::anyhow!("the CA key in the secrets file ([tls] ca_key) is not usable: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| anyhow::anyhow!("the CA certificate in the secrets file ([tls] ca_cert) is not usable: {e}"))?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(None);
    p.subject_alt_names = names
        .dns
        .iter()
        .map(|d| Ok(SanType::DnsName(d.as_str().try_into()?)))
        .chain(names.ips.iter().map(|i| Ok(SanType::IpAddress(*i))))
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    // Names the CA's key, so that a client that trusts two CAs tells them apart.
    p.use_authority_key_identifier_extension = true;
    p.not_before = now() - Duration::hours(1);
    p.not_after = now() + Duration::days(NODE_DAYS);
    let cert = p.signed_by(&key, &issuer)?;
    Ok((cert.pem(), Secret::new(key.serialize_pem())))
}

/// Whether a node's certificate and key on disk still fit, else why a new one is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Fits { days_left: i64 },
    Reissue(String),
}

/// Judges the certificate and key on disk against the CA and the names they must carry.
pub fn judge(cert_pem: &str, key_pem: &str, ca_pem: &str, want: &Names) -> Fit {
    match judge_inner(cert_pem, key_pem, ca_pem, want) {
        Ok(f) => f,
        Err(why) => Fit::Reissue(why),
    }
}

fn judge_inner(cert_pem: &str, key_pem: &str, ca_pem: &str, want: &Names) -> Result<Fit, String> {
    let (_, cert_pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| format!("not PEM: {e}"))?;
    let cert = cert_pem.parse_x509().map_err(|e| format!("not a certificate: {e}"))?;
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| format!("CA not PEM: {e}"))?;
    let ca = ca_pem.parse_x509().map_err(|e| format!("CA not a certificate: {e}"))?;
    if cert.verify_signature(Some(ca.public_key())).is_err() || cert.issuer() != ca.subject() {
        return Ok(Fit::Reissue("it was not issued by the CA in the secrets file".into()));
    }
    let key = KeyPair::from_pem(key_pem).map_err(|e| format!("the key is not usable: {e}"))?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Ok(Fit::Reissue("the key does not belong to the certificate".into()));
    }
    if cert.subject().iter_common_name().next().is_some() {
        return Ok(Fit::Reissue("it has a CommonName, with which etcd's gateway refuses logins".into()));
    }
    let mut have = Names::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    have.dns.insert(d.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        have.ips.insert(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        have.ips.insert(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    if &have != want {
        return Ok(Fit::Reissue(format!("it names {} where this node needs {}", describe(&have), describe(want))));
    }
    let days_left = (cert.validity().not_after.timestamp() - now().unix_timestamp()) / 86400;
    if days_left < RENEW_DAYS {
        return Ok(Fit::Reissue(format!("it expires in {days_left} days")));
    }
    Ok(Fit::Fits { days_left })
}

fn describe(n: &Names) -> String {
    let all: Vec<String> = n.dns.iter().cloned().chain(n.ips.iter().map(IpAddr::to_string)).collect();
    all.join(", ")
}

/// Whether the CA's key belongs to its certificate.
pub fn key_matches(ca: &Ca) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(ca.cert_pem.as_bytes()) else { return false };
    let (Ok(cert), Ok(key)) = (pem.parse_x509(), KeyPair::from_pem(ca.key_pem.expose())) else { return false };
    key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref()
}

/// The certificates of a PEM file or bundle, as DER (what a server presents): a CA file holds
/// two during a rotation.
pub fn ders(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).filter_map(Result::ok).map(|p| p.contents).collect()
}

/// Whether a certificate (DER, as a server presents it) was signed by a CA of the bundle.
pub fn issued_by_any(cert_der: &[u8], bundle: &str) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else { return false };
    x509_parser::pem::Pem::iter_from_buffer(bundle.as_bytes()).filter_map(Result::ok).any(|p| {
        p.parse_x509()
            .is_ok_and(|ca| cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok())
    })
}

/// Days until a PEM certificate expires (negative once it has).
pub fn days_left(cert_pem: &str) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some((cert.validity().not_after.timestamp() - now().unix_timestamp()).div_euclid(86400))
}

/// A client for the cluster's APIs (short timeouts, no proxy); with PEM material, it trusts
/// only the cluster CA and presents the given certificate.
pub fn client(material: Option<(&[u8], &[u8], &[u8])>) -> anyhow::Result<reqwest::blocking::Client> {
    // tls_info: a CA rotation looks at the certificates the peers present.
    let b = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(3)).no_proxy().tls_info(true);
    let b = match material {
        // Every CA of the bundle: during a rotation, the node trusts two.
        Some((ca, cert, key)) => reqwest::Certificate::from_pem_bundle(ca)?
            .into_iter()
            .fold(b.tls_built_in_root_certs(false), |b, c| b.add_root_certificate(c))
            .identity(reqwest::Identity::from_pem(&[cert, key].concat())?),
        None => b,
    };
    Ok(b.build()?)
}

/// hanode's own client for this node, once the node's certificate is on disk.
pub fn node_client() -> Option<reqwest::blocking::Client> {
    let read = |p: &str| std::fs::read(p).ok();
    let (ca, cert, key) = (read(CA)?, read(CERT)?, read(KEY)?);
    client(Some((&ca, &cert, &key))).ok()
}

/// The CA and node certificates on disk (public), for the units' change detection: empty
/// with TLS off, so that turning it off changes nothing for sites that never had it.
pub fn fingerprint(cx: &crate::context::Context) -> String {
    if !cx.site.tls.enabled {
        return String::new();
    }
    [CA, CERT]
        .iter()
        .map(|p| std::fs::read_to_string(cx.host_path(std::path::Path::new(p))).unwrap_or_default())
        .collect()
}

/// The scheme of every URL between the cluster's daemons.
pub fn scheme(site: &crate::config::Site) -> &'static str {
    if site.tls.enabled { "https" } else { "http" }
}

/// What the certificate and key on disk are worth against the secrets file's CA, and the
/// CAs this node is to trust.
pub fn node_fit(cx: &crate::context::Context) -> anyhow::Result<(Fit, &Ca, String)> {
    let secrets = cx.secrets.as_ref();
    let ca = secrets.and_then(|s| s.ca.as_ref()).ok_or_else(|| {
        crate::error::bad_input(format!(
            "TLS needs the cluster CA from the secrets file {}: `hanode secrets add-missing --file {}`",
            cx.secrets_path.display(),
            cx.secrets_path.display()
        ))
    })?;
    let trusted = trusted(ca, &secrets.map(|s| s.ca_rotation.clone()).unwrap_or_default());
    let read = |p: &str| std::fs::read_to_string(cx.host_path(std::path::Path::new(p)));
    let fit = match (read(CERT), read(KEY)) {
        (Ok(cert), Ok(key)) => match judge(&cert, &key, &ca.cert_pem, &names(cx)) {
            // A new certificate is what makes every daemon load the new trust: Patroni's REST
            // API builds its TLS context again only when its certificate's serial changes.
            Fit::Fits { .. } if read(CA).is_ok_and(|on_disk| ders(&on_disk) != ders(&trusted)) => {
                Fit::Reissue("the CAs the node trusts change (a CA rotation)".into())
            }
            fit => fit,
        },
        _ => Fit::Reissue("there is none yet".into()),
    };
    Ok((fit, ca, trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ip: [u8; 4]) -> Names {
        Names {
            dns: ["pg1".to_string(), "localhost".to_string()].into_iter().collect(),
            ips: [IpAddr::from(ip), IpAddr::from([127, 0, 0, 1])].into_iter().collect(),
        }
    }

    #[test]
    fn a_bundle_splits_into_its_cas_and_tells_who_issued_a_certificate() {
        let (a, b) = (generate_ca().unwrap(), generate_ca().unwrap());
        let bundle = trusted(&a, &Rotation::Next(b.clone()));
        assert_eq!(ders(&bundle), [ders(&a.cert_pem), ders(&b.cert_pem)].concat());
        let (cert, _) = issue(&b, &names([10, 0, 0, 11])).unwrap();
        let der = &ders(&cert)[0];
        assert!(issued_by_any(der, &bundle));
        assert!(issued_by_any(der, &b.cert_pem));
        assert!(!issued_by_any(der, &a.cert_pem));
        // Without its final newline a PEM still ends its line in the bundle.
        let bare = Ca { cert_pem: a.cert_pem.trim_end().to_string(), key_pem: a.key_pem.clone() };
        assert_eq!(ders(&trusted(&bare, &Rotation::Next(b.clone()))).len(), 2);
    }

    #[test]
    fn an_issued_certificate_fits_until_ca_names_or_key_change() {
        let ca = generate_ca().unwrap();
        let want = names([10, 0, 0, 11]);
        let (cert, key) = issue(&ca, &want).unwrap();
        match judge(&cert, key.expose(), &ca.cert_pem, &want) {
            Fit::Fits { days_left } => assert!((NODE_DAYS - 1..=NODE_DAYS).contains(&days_left), "{days_left}"),
            other => panic!("{other:?}"),
        }
        let other_ca = generate_ca().unwrap();
        assert!(
            matches!(judge(&cert, key.expose(), &other_ca.cert_pem, &want), Fit::Reissue(w) if w.contains("not issued by"))
        );
        let moved = names([10, 0, 0, 12]);
        assert!(matches!(judge(&cert, key.expose(), &ca.cert_pem, &moved), Fit::Reissue(w) if w.contains("10.0.0.12")));
        let (_, other_key) = issue(&ca, &want).unwrap();
        assert!(matches!(judge(&cert, other_key.expose(), &ca.cert_pem, &want), Fit::Reissue(w) if w.contains("key")));
        assert!(matches!(judge("garbage", key.expose(), &ca.cert_pem, &want), Fit::Reissue(_)));
        assert!(matches!(days_left(&ca.cert_pem), Some(d) if d == CA_DAYS || d == CA_DAYS - 1));
    }

    #[test]
    fn the_ca_key_never_shows_in_debug() {
        let ca = generate_ca().unwrap();
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }
}
