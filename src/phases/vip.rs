//! The `vip` phase: vip-manager's user, key copy and configuration; the VIP follows the
//! leader key. Its unit is started by the units phase.

use super::{file, key_copy, system_user};
use crate::config::Role;
use crate::context::Context;
use crate::engine::{Check, Phase, Stage, Steps, step};
use crate::error::{Kind, not_yet};
use crate::files::FileSpec;
use crate::units::DaemonKind;
use crate::vip;

pub const PHASE: Phase = Phase::new(
    "vip",
    "vip-manager's configuration: the VIP follows the leader key",
    Stage::Firstboot,
    &[Role::Postgres],
    steps,
)
.with_checks(|cx| {
    vec![match vip::interface(cx) {
        Ok(i) => Check::ok("vip interface", i),
        Err(e) => Check::blocking("vip interface", Kind::BadInput, format!("{e:#}")),
    }]
})
.only_if(|cx| cx.site.vip.is_some());

fn steps(_: &Context) -> Steps {
    Ok(vec![
        system_user(vip::USER, "/nonexistent"),
        key_copy(DaemonKind::VipManager, vip::USER),
        step("vip-manager.yml", |cx| {
            let text = vip::config_text(cx).map_err(|e| not_yet("write vip-manager.yml", e))?;
            // It holds its DCS password or token: readable by vip-manager, not writable by it.
            file(cx, FileSpec::new(vip::CONFIG, text, 0o640).owned_by("root", vip::USER).secret())
        }),
    ])
}
