//! hanode: turns a RED OS or Debian host into a member of a highly available PostgreSQL
//! cluster, by itself, on that host. See README.md and ../shared/DESIGN.md.

pub mod artifacts;
pub mod cli;
pub mod config;
pub mod consul_acl;
pub mod context;
pub mod dcs;
pub mod disks;
pub mod download;
pub mod dynamic_config;
pub mod engine;
pub mod error;
pub mod etcd_auth;
pub mod exec;
pub mod files;
pub mod identity;
pub mod lock;
pub mod member;
pub mod node;
pub mod packages;
pub mod patroni;
pub mod phases;
pub mod pin;
pub mod profile;
pub mod restart;
pub mod roles;
pub mod selinux;
pub mod status;
pub mod tls;
pub mod ui;
pub mod units;
pub mod venv;
pub mod vip;
pub mod yaml;
