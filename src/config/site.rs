//! Reading the site file: each table's keys with their rules, then the rules across tables.
//! The types they produce are in `config/mod.rs`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::{
    ArchiveFormat, Artifact, ArtifactKind, At, Client, Cluster, Database, Dcs, DcsKind, Disks, Filesystem, Install,
    Member, Packages, Patroni, PatroniInstall, Postgresql, Repository, Role, Site, Size, Table, Tls, Vip, Volume,
    kinds,
};

pub(super) fn read_site(root: &Table, path: &Path) -> Option<Site> {
    let cluster = root.req_table("cluster", "the cluster's name and members").and_then(|t| read_cluster(&t));
    let dcs = match root.opt_table("dcs") {
        Some(t) => read_dcs(&t),
        None => Some(Dcs { kind: DcsKind::Etcd, client_port: 2379, peer_port: 2380, datacenter: None }),
    };
    let patroni = match root.opt_table("patroni") {
        Some(t) => read_patroni(&t, dcs.as_ref().map(|d| d.kind)),
        None => Some(Patroni::default()),
    };
    let postgresql = match root.opt_table("postgresql") {
        Some(t) => read_postgresql(&t),
        None => Some(Postgresql::default()),
    };
    let vip = root.opt_table("vip").map(|t| read_vip(&t, cluster.as_ref()));
    let disks = root.opt_table("disks").map(|t| read_disks(&t));
    let artifacts = match root.opt_table("artifacts") {
        Some(t) => read_artifacts(&t),
        None => Some(Vec::new()),
    };
    let install = match root.opt_table("install") {
        Some(t) => read_install(&t),
        None => Some(Install::default()),
    };
    let packages = match root.opt_table("packages") {
        Some(t) => read_packages(&t),
        None => Some(Packages { repository: Repository::Distro, extra: Vec::new() }),
    };
    let tls = match root.opt_table("tls") {
        Some(t) => {
            let enabled = t.opt_bool("enabled");
            t.finish(&["enabled"]);
            Tls { enabled: enabled.unwrap_or(true) }
        }
        None => Tls { enabled: true },
    };
    root.finish(&[
        "cluster",
        "vip",
        "dcs",
        "disks",
        "patroni",
        "postgresql",
        "artifacts",
        "install",
        "packages",
        "tls",
    ]);
    if let (Some(d), Some(p)) = (&dcs, &patroni) {
        port_clashes(root, d, p);
    }
    if let (Some(Some(d)), Some(i)) = (&disks, &install) {
        mounts_apart_from_install(root, d, i);
    }
    if let (Some(arts), Some(Some(_)), Some(Dcs { kind: DcsKind::Etcd, .. })) = (&artifacts, &vip, &dcs) {
        let version = |k| arts.iter().find(|a| a.kind == k).map(|a| a.version.as_str());
        let clash = match (version(ArtifactKind::Etcd), version(ArtifactKind::VipManager)) {
            (Some(etcd), Some(vm)) if vm.starts_with("1.") && !etcd_has_v2(etcd) => Some((etcd, vm)),
            _ => None,
        };
        if let Some((etcd, vm)) = clash {
            root.error(
                "artifacts",
                format!("vip-manager {vm} reads only etcd's v2 API, which etcd {etcd} no longer has (removed in 3.6): pin vip-manager 2.x or later (`hanode pin vip-manager VERSION`) or etcd 3.5"),
            );
        }
    }
    // Consul reads TLS settings from the `tls` block since 1.12.
    if let (Some(arts), Some(Dcs { kind: DcsKind::Consul, .. }), true) = (&artifacts, &dcs, tls.enabled) {
        if let Some(v) = arts.iter().find(|a| a.kind == ArtifactKind::Consul).map(|a| a.version.as_str()) {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            if matches!((parts.next(), parts.next()), (Some(1), Some(minor)) if minor < 12) || v.starts_with("0.") {
                root.error(
                    "artifacts",
                    format!("Consul {v} does not read the `tls` block hanode writes for TLS (Consul 1.12 and later do): pin a later Consul (`hanode pin consul VERSION`)"),
                );
            }
        }
    }
    Some(Site {
        path: path.to_path_buf(),
        cluster: cluster?,
        vip: vip.map_or(Some(None), |v| v.map(Some))?,
        dcs: dcs?,
        disks: disks.map_or(Some(None), |d| d.map(Some))?,
        patroni: patroni?,
        postgresql: postgresql?,
        artifacts: artifacts?,
        install: install?,
        packages: packages?,
        tls,
    })
}

/// The ports one node listens on must differ: a clash shows only when the second daemon fails
/// to start, on one node type or another.
fn port_clashes(root: &Table, d: &Dcs, p: &Patroni) {
    let fixed: &[(&str, u16)] = match d.kind {
        // Consul's server RPC, WAN gossip and DNS ports, which hanode leaves at their defaults.
        DcsKind::Consul => {
            &[("Consul's server RPC port", 8300), ("Consul's WAN gossip port", 8302), ("Consul's DNS port", 8600)]
        }
        DcsKind::Etcd => &[],
    };
    let ports = [
        ("dcs.client_port", d.client_port),
        ("dcs.peer_port", d.peer_port),
        ("patroni.rest_api_port", p.rest_api_port),
        ("patroni.postgres_port", p.postgres_port),
    ];
    for (i, (key, port)) in ports.iter().enumerate() {
        // Each clash once: at the later key of a pair, naming the earlier one.
        let other = ports[..i].iter().chain(fixed).find(|(_, q)| q == port);
        if let Some((other, _)) = other {
            // Reported at whichever of the two keys the file sets.
            let set = |key: &str| {
                let (table, k) = key.split_once('.')?;
                root.opt_table(table).filter(|t| t.has(k)).map(|t| (t, k.to_string()))
            };
            let msg = format!("port {port} is shared by {key} and {other}: every daemon on a node needs its own port");
            match set(key).or_else(|| set(other)) {
                Some((t, k)) => t.error(&k, msg),
                None => root.error(key.split('.').next().unwrap_or(key), msg),
            }
        }
    }
}

/// A volume mounted over or inside hanode's own directories (or they inside it) would give
/// postgres the programs root runs, or hide them.
fn mounts_apart_from_install(root: &Table, d: &Disks, i: &Install) {
    let Some(t) = root.opt_table("disks") else { return };
    for (role, v) in [("data", &d.data), ("wal", &d.wal)] {
        let Some(mount) = &v.mount else { continue };
        let dirs =
            [("install.prefix", &i.prefix), ("install.bin_dir", &i.bin_dir), ("install.cache_dir", &i.cache_dir)];
        if let Some((key, dir)) = dirs.iter().find(|(_, dir)| kinds::nested(mount, dir)) {
            if let Some(vt) = t.opt_table(role) {
                vt.error(
                    "mount",
                    format!("{} and {key} {} are the same or one is inside the other: the volume would hold or hide hanode's own files", mount.display(), dir.display()),
                );
            }
        }
    }
}

/// Whether an etcd release still serves the v2 API (`enable-v2`): up to 3.5.
fn etcd_has_v2(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    matches!((parts.next(), parts.next()), (Some(3), Some(minor)) if minor <= 5) || version.starts_with("2.")
}

fn read_packages(t: &Table) -> Option<Packages> {
    let repo = t.opt_parsed("repository", |s| kinds::word(s, "unknown repository"));
    let extra = t.opt_str_list("extra");
    t.finish(&["repository", "extra"]);
    let mut ok = true;
    for e in extra.iter().flatten() {
        // A trailing `-` asks apt to remove the package, a trailing `+` is apt syntax too.
        if !is_name(&e.value, &['-', '_', '.', '+']) || e.value.ends_with(['-', '+']) {
            t.doc().error_at(e.span.clone(), &e.key, format!("`{}` is not a package name", e.value));
            ok = false;
        }
    }
    ok.then(|| Packages {
        repository: repo.map_or(Repository::Distro, |r| r.value),
        extra: extra.into_iter().flatten().map(|e| e.value).collect(),
    })
}

fn read_artifacts(t: &Table) -> Option<Vec<Artifact>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (name, a) in t.sub_tables() {
        let Some(kind) = crate::artifacts::Kind::from_name(&name) else {
            let known: Vec<&str> = crate::artifacts::Kind::ALL.iter().map(|k| k.name()).collect();
            t.error(&name, format!("unknown artifact `{name}`: hanode installs {}", known.join(", ")));
            ok = false;
            continue;
        };
        let version = a.req_parsed("version", "the release version, e.g. \"3.5.17\"", kinds::version);
        let url = a.req_parsed("url", "the release file's URL", |s| {
            let u = kinds::url(s)?;
            // The file's name as the server knows it: Debian's pool spells `+` as `%2b`.
            let file = u.path_segments().and_then(|mut p| p.next_back()).map(kinds::percent_decoded);
            match file {
                Some(Some(file)) if kinds::file_name(&file).is_ok() => Ok(s.to_string()),
                _ => Err(format!(
                    "`{}` is not the URL of a release file (its last segment names the file)",
                    kinds::masked(s)
                )),
            }
        });
        let sha = a.req_parsed(
            "sha256",
            "the release file's SHA-256 (64 hex digits): `hanode pin` reads it from upstream",
            |s| {
                if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
                    Ok(s.to_ascii_lowercase())
                } else {
                    Err("not a SHA-256: expected 64 hex digits".to_string())
                }
            },
        );
        let format = a.opt_parsed("format", |s| kinds::word(s, "unknown format"));
        let files = a.opt_str_list("files");
        a.finish(&["version", "url", "sha256", "format", "files"]);
        let (Some(version), Some(url), Some(sha)) = (version, url, sha) else {
            ok = false;
            continue;
        };
        let format = format.map(|f| f.value).unwrap_or_else(|| {
            if url.value.ends_with(".tar.gz") || url.value.ends_with(".tgz") {
                ArchiveFormat::TarGz
            } else if url.value.ends_with(".zip") {
                ArchiveFormat::Zip
            } else {
                ArchiveFormat::Binary
            }
        });
        let files: Vec<String> = match files {
            Some(f) => f.into_iter().map(|f| f.value).collect(),
            None => kind.programs().iter().map(|f| f.to_string()).collect(),
        };
        if let Some(Err(e)) = files.iter().map(|f| kinds::file_name(f)).find(Result::is_err) {
            a.error("files", e);
            ok = false;
            continue;
        }
        if files.is_empty() {
            a.error(
                "files",
                "list the program names to install, e.g. [\"etcd\", \"etcdctl\"] (plain names, no directories)",
            );
            ok = false;
            continue;
        }
        if format == ArchiveFormat::Binary && files.len() != 1 {
            a.error("files", "a plain binary download installs exactly one program");
            ok = false;
            continue;
        }
        out.push(Artifact { kind, name, version: version.value, url: url.value, sha256: sha.value, format, files });
    }
    ok.then_some(out)
}

fn read_install(t: &Table) -> Option<Install> {
    let abs = |s: &str| match kinds::abs_path(s)? {
        p if s == "/" => Err(format!("`{}` is the root directory: give a directory of hanode's own", p.display())),
        p => Ok(p),
    };
    let mirror = t.opt_parsed("mirror", kinds::mirror);
    let cache = t.opt_parsed("cache_dir", abs);
    let prefix = t.opt_parsed("prefix", abs);
    let bin = t.opt_parsed("bin_dir", abs);
    let pip_index = t.opt_parsed("pip_index", |s| kinds::url(s).map(|_| s.to_string()));
    t.finish(&["mirror", "cache_dir", "prefix", "bin_dir", "pip_index"]);
    let d = Install::default();
    Some(Install {
        mirror: mirror.map(|m| m.value),
        cache_dir: cache.map_or(d.cache_dir, |c| c.value),
        prefix: prefix.map_or(d.prefix, |c| c.value),
        bin_dir: bin.map_or(d.bin_dir, |c| c.value),
        pip_index: pip_index.map(|p| p.value),
    })
}

fn is_name(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
        && s.len() <= 63
}

pub fn parse_name(s: &str) -> Result<String, String> {
    if is_name(s, &['-', '_', '.']) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a valid name: use letters, digits, `-`, `_` or `.` (63 at most), starting with a letter or digit"
        ))
    }
}

fn read_cluster(t: &Table) -> Option<Cluster> {
    let name = t.req_parsed("name", "the Patroni scope, e.g. \"main\"", |s| {
        if is_name(s, &['-', '_']) {
            Ok(s.to_string())
        } else {
            Err(format!("`{s}` is not a valid cluster name: use letters, digits, `-` or `_`"))
        }
    });
    let version = t.opt_int("postgres_version", 13..=18);
    let mut members = Vec::new();
    let mut seen_names: HashMap<String, String> = HashMap::new();
    let mut seen_addrs: HashMap<IpAddr, String> = HashMap::new();
    let list = t.req_table_list("members", "a list like [{ name = \"pg1\", address = \"10.0.0.11\" }, ...]");
    let mut ok = true;
    for m in &list {
        let name = m.req_parsed("name", "the member's hostname", parse_name);
        let address = m.req_parsed("address", "the member's IP address", |s| {
            s.parse::<IpAddr>()
                .map_err(|_| format!("`{s}` is not an IP address (give it without a prefix, e.g. 10.0.0.11)"))
                .and_then(kinds::host_address)
        });
        let role = match m.opt_str("role") {
            None => Some(Role::Postgres),
            Some(r) => match kinds::word(&r.value, "unknown role") {
                Ok(role) => Some(role),
                Err(why) => {
                    m.error("role", why);
                    None
                }
            },
        };
        m.finish(&["name", "address", "role"]);
        if let Some(n) = &name {
            if let Some(first) = seen_names.insert(n.value.clone(), n.key.clone()) {
                m.error(
                    "name",
                    format!("duplicate member name `{}` (also {first}): every member needs its own name", n.value),
                );
                ok = false;
            }
        }
        if let Some(a) = &address {
            if let Some(first) = seen_addrs.insert(a.value, a.key.clone()) {
                m.error("address", format!("duplicate member address {} (also {first})", a.value));
                ok = false;
            }
        }
        match (name, address, role) {
            (Some(n), Some(a), Some(role)) => members.push(Member { name: n.value, address: a.value, role }),
            _ => ok = false,
        }
    }
    if ok && !list.is_empty() && !members.iter().any(|m| m.role == Role::Postgres) {
        t.error("members", "no member has role \"postgres\": a cluster needs at least one PostgreSQL node");
        ok = false;
    }
    if list.is_empty() && t.has("members") && ok {
        // An empty list is as useless as a missing one.
        t.error("members", "the member list is empty: list every node of the cluster");
        ok = false;
    }
    t.finish(&["name", "postgres_version", "members"]);
    if !ok {
        return None;
    }
    Some(Cluster { name: name?.value, postgres_version: version.map(|v| v.value as u32), members })
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let err = || format!("`{s}` is not an address with a prefix length, e.g. \"10.0.0.100/24\"");
    let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
    let addr: IpAddr = addr.parse().map_err(|_| err())?;
    let prefix: u8 = prefix.parse().map_err(|_| err())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix == 0 || prefix > max {
        return Err(format!("prefix length /{prefix} is out of range for {addr}: expected 1 to {max}"));
    }
    Ok((addr, prefix))
}

/// Whether `addr` lies in `net`/`prefix` (false across address families).
pub fn in_subnet(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    addr.is_ipv4() == net.is_ipv4() && network_of(addr, prefix) == network_of(net, prefix)
}

/// The network address of `addr`/`prefix` (its host bits cleared).
fn network_of(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

fn read_vip(t: &Table, cluster: Option<&Cluster>) -> Option<Vip> {
    let addr = t.req_parsed("address", "the virtual IP with its prefix, e.g. \"10.0.0.100/24\"", parse_cidr);
    let interface = t.opt_parsed("interface", kinds::interface);
    t.finish(&["address", "interface"]);
    let addr = addr?;
    let (ip, prefix) = addr.value;
    if let Err(e) = kinds::host_address(ip) {
        t.error("address", e);
        return None;
    }
    if let IpAddr::V4(v4) = ip {
        // The network's own address and its broadcast address are not a host's.
        let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
        let host_bits = u32::from(v4) & host_mask;
        if prefix < 31 && (host_bits == 0 || host_bits == host_mask) {
            let which = if host_bits == 0 { "network" } else { "broadcast" };
            t.error(
                "address",
                format!("{ip} is the {which} address of {ip}/{prefix}: choose a free host address in the subnet"),
            );
            return None;
        }
    }
    if let Some(cluster) = cluster {
        for m in cluster.members.iter().filter(|m| m.role == Role::Postgres) {
            if m.address == ip {
                t.error(
                    "address",
                    format!(
                        "the VIP {ip} is member {}'s own address: choose a free address in the members' subnet",
                        m.name
                    ),
                );
                return None;
            }
            if !in_subnet(m.address, ip, prefix) {
                t.error("address", format!(
                    "the VIP {ip}/{prefix} is outside the members' subnet: member {} ({}) is not in it; the VIP must be reachable on the members' own network",
                    m.name, m.address
                ));
                return None;
            }
        }
    }
    Some(Vip { address: ip, prefix, interface: interface.map(|i| i.value) })
}

fn read_dcs(t: &Table) -> Option<Dcs> {
    let kind = t.opt_parsed("type", |s| kinds::word(s, "unknown DCS type"));
    // An invalid type is already reported; the other keys are still checked.
    let invalid = t.has("type") && kind.is_none();
    let kind_v = kind.map_or(DcsKind::Etcd, |k| k.value);
    let default_client = if kind_v == DcsKind::Consul { 8500 } else { 2379 };
    let client = t.opt_int("client_port", 1..=65535);
    let peer = t.opt_int("peer_port", 1..=65535);
    let dc = t.opt_parsed("datacenter", |s| {
        if is_name(s, &['-', '_']) { Ok(s.to_string()) } else { Err(format!("`{s}` is not a valid datacenter name")) }
    });
    t.finish(&["type", "client_port", "peer_port", "datacenter"]);
    if invalid {
        return None;
    }
    Some(Dcs {
        kind: kind_v,
        client_port: client.map_or(default_client, |c| c.value as u16),
        peer_port: peer.map_or(if kind_v == DcsKind::Consul { 8301 } else { 2380 }, |c| c.value as u16),
        datacenter: dc.map(|d| d.value),
    })
}

/// PostgreSQL settings that this node's own configuration decides, with what decides them.
const NODE_SETTINGS: &[(&str, &str)] = &[
    ("port", "[patroni] postgres_port sets it"),
    ("listen_addresses", "Patroni listens on every address; pg_hba decides who gets in"),
    ("data_directory", "[disks] decides where the data lives"),
    ("config_file", "Patroni writes it"),
    ("hba_file", "Patroni writes it"),
    ("ident_file", "Patroni writes it"),
    ("cluster_name", "Patroni sets it to the cluster's name"),
    ("hot_standby", "Patroni's replicas need it on"),
    ("unix_socket_directories", "hanode and Patroni use /var/run/postgresql"),
    ("password_encryption", "hanode's pg_hba takes scram-sha-256 only"),
    ("synchronous_standby_names", "Patroni manages it: set [patroni] synchronous_mode"),
    ("primary_conninfo", "Patroni manages replication"),
    ("primary_slot_name", "Patroni manages replication slots"),
    (
        "archive_mode",
        "WAL archiving is not managed by hanode yet (without an archive command WAL would pile up): set it with patronictl edit-config",
    ),
    ("dynamic_library_path", "PostgreSQL loads libraries from its own directory only"),
];

/// Families of settings refused by their name's shape: TLS is [tls]'s; a command or a library
/// path runs code as postgres; an include reads another file.
fn node_setting_family(name: &str) -> Option<&'static str> {
    if name.starts_with("ssl") {
        Some("[tls] decides PostgreSQL's TLS settings")
    } else if name.ends_with("_command") || name.ends_with("_library") {
        Some("a command or library that PostgreSQL runs is not set through hanode: use patronictl edit-config")
    } else if name.starts_with("include") {
        Some("PostgreSQL reads no other file than the one Patroni writes")
    } else {
        None
    }
}

/// `[postgresql] parameters`: names as PostgreSQL spells them (an extension's with one dot),
/// lower-cased; values without control characters; none that a node decides for itself.
fn read_postgresql(t: &Table) -> Option<Postgresql> {
    let settings = t.opt_settings("parameters");
    let access = read_access(t);
    t.finish(&["parameters", "users", "databases", "clients"]);
    let name_ok = |n: &str| {
        let part = |p: &str| {
            p.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        n.len() <= 63 && n.split('.').count() <= 2 && n.split('.').all(part)
    };
    let mut parameters: Vec<(String, String)> = Vec::new();
    let mut ok = true;
    for At { value: (name, value), key, span } in settings.unwrap_or_default() {
        let lower = name.to_ascii_lowercase();
        let err = |m: String| t.doc().error_at(span.clone(), &key, m);
        if !name_ok(&name) {
            err(format!(
                "`{name}` is not a PostgreSQL parameter name (letters, digits and _; an extension's as extension.name)"
            ));
        } else if let Some(why) =
            NODE_SETTINGS.iter().find(|(n, _)| *n == lower).map(|(_, w)| *w).or_else(|| node_setting_family(&lower))
        {
            err(format!("`{lower}` is not set here: {why}"));
        } else if lower == "wal_level" && !["replica", "logical"].contains(&value.to_ascii_lowercase().as_str()) {
            err(format!("wal_level `{value}`: Patroni's replicas need `replica` or `logical`"));
        } else if lower.ends_with("_preload_libraries")
            && !value.split(',').all(|l| {
                let l = l.trim();
                !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        {
            err(format!(
                "{lower}: libraries by name only (comma-separated, from PostgreSQL's own library directory), not `{value}`"
            ));
        } else if value.chars().any(char::is_control) || value.len() > 4096 {
            err(format!("the value of `{lower}` has a control character or is longer than 4096 bytes"));
        } else if parameters.iter().any(|(n, _)| *n == lower) {
            err(format!("`{lower}` is set twice (names are case-insensitive)"));
        } else {
            parameters.push((lower, value));
            continue;
        }
        ok = false;
    }
    let (users, databases, clients) = access?;
    ok.then_some(Postgresql { parameters, users, databases, clients })
}

/// The roles Patroni itself logs in as: they connect from the members only.
pub const PATRONI_ROLES: [&str; 3] = ["postgres", "replicator", "rewinder"];

/// `users`, `databases` and `clients` of `[postgresql]`: who the leader creates and who pg_hba
/// admits from which network.
#[allow(clippy::type_complexity)]
fn read_access(t: &Table) -> Option<(Vec<String>, Vec<Database>, Vec<Client>)> {
    let mut ok = true;
    let mut name = |at: &At<String>, what: &str| match kinds::sql_name(&at.value) {
        Ok(n) if what == "user" && PATRONI_ROLES.contains(&n.as_str()) => {
            t.doc().error_at(
                at.span.clone(),
                &at.key,
                format!("`{n}` is Patroni's own role: it connects from the members only"),
            );
            ok = false;
            None
        }
        Ok(n) => Some(n),
        Err(e) => {
            t.doc().error_at(at.span.clone(), &at.key, e);
            ok = false;
            None
        }
    };
    let mut users: Vec<String> = Vec::new();
    for at in t.opt_str_list("users").unwrap_or_default() {
        if let Some(n) = name(&at, "user") {
            if users.contains(&n) {
                t.doc().error_at(at.span.clone(), &at.key, format!("`{n}` is listed twice"));
            } else {
                users.push(n);
            }
        }
    }
    let mut databases: Vec<Database> = Vec::new();
    for d in t.opt_table_list("databases").unwrap_or_default() {
        let db = d.req_str("name", "the database's name");
        let owner = d.req_str("owner", "one of postgresql.users");
        d.finish(&["name", "owner"]);
        let (Some(db), Some(owner)) = (db, owner) else { continue };
        let (db_name, owner_name) = (name(&db, "database"), name(&owner, "user"));
        if let Some(n) = &db_name {
            if ["postgres", "template0", "template1"].contains(&n.as_str()) {
                d.error("name", format!("`{n}` is PostgreSQL's own database"));
            } else if databases.iter().any(|x| x.name == *n) {
                d.error("name", format!("database `{n}` is listed twice"));
            }
        }
        if let Some(o) = &owner_name {
            if !users.contains(o) {
                d.error("owner", format!("`{o}` is not in postgresql.users: the owner must be a role hanode creates"));
            }
        }
        if let (Some(name), Some(owner)) = (db_name, owner_name) {
            databases.push(Database { name, owner });
        }
    }
    let mut clients = Vec::new();
    for c in t.opt_table_list("clients").unwrap_or_default() {
        let network = c.req_parsed("network", "the clients' network, e.g. \"10.20.0.0/16\"", |s| {
            let (ip, prefix) = parse_cidr(s)?;
            let net = network_of(ip, prefix);
            if net == ip {
                Ok((ip, prefix))
            } else {
                Err(format!("`{s}` has host bits set: the network is {net}/{prefix}"))
            }
        });
        // Absent or ["all"]: all (an empty list never means none; `all` stands alone).
        let mut list = |key: &str, what: &str| -> Vec<String> {
            let items = c.opt_str_list(key).unwrap_or_default();
            if c.has(key) && (items.is_empty() || (items.len() > 1 && items.iter().any(|a| a.value == "all"))) {
                c.error(key, format!("list the {what}s by name, or write [\"all\"] (or leave the key out) for all"));
                return Vec::new();
            }
            items.iter().filter(|a| a.value != "all").filter_map(|at| name(at, what)).collect()
        };
        let dbs = list("databases", "database");
        let client_users = list("users", "user");
        c.finish(&["network", "databases", "users"]);
        if let Some(n) = network {
            let (network, prefix) = n.value;
            clients.push(Client { network, prefix, databases: dbs, users: client_users });
        }
    }
    ok.then_some((users, databases, clients))
}

fn read_patroni(t: &Table, dcs: Option<DcsKind>) -> Option<Patroni> {
    let ttl = t.opt_int("ttl", 5..=3600);
    let loop_wait = t.opt_int("loop_wait", 1..=3600);
    let retry = t.opt_int("retry_timeout", 1..=3600);
    let sync = t.opt_bool("synchronous_mode");
    let install = t.opt_parsed("install", |s| kinds::word(s, "unknown install method"));
    let rest = t.opt_int("rest_api_port", 1..=65535);
    let pgport = t.opt_int("postgres_port", 1..=65535);
    let watchdog = t.opt_parsed("watchdog", |s| kinds::word(s, "unknown watchdog mode"));
    let lag = t.opt_int("maximum_lag_on_failover", 0..=i64::MAX);
    t.finish(&[
        "install",
        "ttl",
        "loop_wait",
        "retry_timeout",
        "synchronous_mode",
        "rest_api_port",
        "postgres_port",
        "watchdog",
        "maximum_lag_on_failover",
    ]);
    let d = Patroni::default();
    let p = Patroni {
        rest_api_port: rest.map_or(d.rest_api_port, |v| v.value as u16),
        postgres_port: pgport.map_or(d.postgres_port, |v| v.value as u16),
        watchdog: watchdog.map_or(d.watchdog, |w| w.value),
        maximum_lag_on_failover: lag.map_or(d.maximum_lag_on_failover, |v| v.value as u64),
        install: install.map_or(PatroniInstall::Pip, |i| i.value),
        ttl: ttl.as_ref().map_or(30, |v| v.value as u32),
        loop_wait: loop_wait.as_ref().map_or(10, |v| v.value as u32),
        retry_timeout: retry.as_ref().map_or(10, |v| v.value as u32),
        synchronous_mode: sync.unwrap_or(false),
    };
    // Report a rule that spans keys at the first of them that the file sets.
    let at = ["ttl", "loop_wait", "retry_timeout"]
        .into_iter()
        .zip([&ttl, &loop_wait, &retry])
        .find(|(_, v)| v.is_some())
        .map_or("ttl", |(k, _)| k);
    if p.loop_wait + 2 * p.retry_timeout > p.ttl {
        t.error(at, format!(
            "Patroni needs loop_wait + 2*retry_timeout <= ttl, but {} + 2*{} = {} > {}: raise ttl or lower loop_wait/retry_timeout",
            p.loop_wait, p.retry_timeout, p.loop_wait + 2 * p.retry_timeout, p.ttl
        ));
        return None;
    }
    if dcs == Some(DcsKind::Consul) && p.ttl < 20 {
        t.error(
            at,
            format!(
                "ttl {} is below 20, the floor with Consul (its minimum session TTL is 10 s and Patroni sends ttl/2)",
                p.ttl
            ),
        );
        return None;
    }
    Some(p)
}

/// `"100%"`, `"50%"`, `"20G"`, `"512M"`, `"1T"` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<Size, String> {
    let err = || {
        format!("`{s}` is not a size: use a percentage of the disk (\"100%\") or a number with K, M, G or T (\"20G\")")
    };
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        return match p.parse::<u8>() {
            Ok(p) if (1..=100).contains(&p) => Ok(Size::Percent(p)),
            _ => Err(err()),
        };
    }
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(err()),
    };
    let n: u64 = digits.parse().map_err(|_| err())?;
    match n.checked_mul(1 << shift) {
        Some(b) if b > 0 => Ok(Size::Bytes(b)),
        _ => Err(err()),
    }
}

fn read_volume(t: &Table, default_volume: &str) -> Option<Volume> {
    let device = t.req_parsed("device", "the whole disk, e.g. \"/dev/sdb\" or \"/dev/disk/by-id/...\"", kinds::device);
    let volume = t.opt_parsed("volume", |s| {
        if is_name(s, &['-', '_', '.', '+']) {
            Ok(s.to_string())
        } else {
            Err(format!("`{s}` is not a valid LVM volume name"))
        }
    });
    let mount = t.opt_parsed("mount", kinds::mount_point);
    let size = t.opt_parsed("size", parse_size);
    t.finish(&["device", "volume", "mount", "size"]);
    Some(Volume {
        device: device?.value,
        volume: volume.map_or(default_volume.to_string(), |v| v.value),
        mount: mount.map(|m| m.value),
        size: size.map_or(Size::Percent(100), |s| s.value),
    })
}

fn read_disks(t: &Table) -> Option<Disks> {
    let vg = t.opt_parsed("volume_group", |s| {
        if is_name(s, &['-', '_', '.', '+']) {
            Ok(s.to_string())
        } else {
            Err(format!("`{s}` is not a valid LVM volume group name"))
        }
    });
    let fs = t.opt_parsed("filesystem", |s| kinds::word(s, "unsupported filesystem"));
    let opts = t.opt_str_list("mount_options");
    let mkfs = t.opt_str_list("mkfs_options");
    let min = t.opt_parsed("min_size", |s| match parse_size(s)? {
        Size::Bytes(b) => Ok(b),
        Size::Percent(_) => Err("min_size must be an absolute size such as \"10G\"".to_string()),
    });
    let data = t.req_table("data", "the data disk: { device = \"/dev/sdb\" }").and_then(|d| read_volume(&d, "pg_data"));
    let wal = t.req_table("wal", "the WAL disk: { device = \"/dev/sdc\" }").and_then(|w| read_volume(&w, "pg_wal"));
    t.finish(&["volume_group", "filesystem", "mkfs_options", "mount_options", "min_size", "data", "wal"]);
    let (data, wal) = (data?, wal?);
    let wal_table = t.opt_table("wal")?;
    if data.device == wal.device {
        wal_table.error(
            "device",
            format!(
                "the WAL disk is the same device as the data disk ({}): give two different disks",
                data.device.display()
            ),
        );
        return None;
    }
    if data.volume == wal.volume {
        wal_table.error("volume", format!("the WAL volume has the data volume's name `{}`", data.volume));
        return None;
    }
    if let (Some(a), Some(b)) = (&data.mount, &wal.mount) {
        if kinds::nested(a, b) {
            wal_table.error(
                "mount",
                format!("the WAL mount point {} and the data mount point {} are the same or one is inside the other: give two separate directories", b.display(), a.display()),
            );
            return None;
        }
    }
    let filesystem = fs.map_or(Filesystem::Ext4, |f| f.value);
    let mut ok = true;
    for o in opts.iter().flatten() {
        if let Err(e) = kinds::mount_option(&o.value) {
            t.doc().error_at(o.span.clone(), &o.key, e);
            ok = false;
        }
    }
    let mkfs_options: Vec<String> = mkfs.map_or(Vec::new(), |o| o.into_iter().map(|o| o.value).collect());
    if let Err(e) = kinds::mkfs_options(filesystem, &mkfs_options) {
        t.error("mkfs_options", e);
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Disks {
        volume_group: vg.map_or("pg".into(), |v| v.value),
        filesystem,
        mount_options: opts.map_or(vec!["noatime".into()], |o| o.into_iter().map(|o| o.value).collect()),
        mkfs_options,
        min_size: min.map_or(1 << 30, |m| m.value),
        data,
        wal,
    })
}
