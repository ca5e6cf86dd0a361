//! Stream `mirror`: one feed (the source machinery of `feed.rs`) whose
//! deliveries are stored at the origin's sequence and timestamp, subject
//! (after the mirror's transforms), headers and payload as they are.
//! Consumer sequences decide what is a gap: the consumer starts after the
//! mirror's last sequence, so a delivery with the next consumer sequence
//! and a later origin sequence means the origin holds nothing in between
//! (deleted, purged, filtered out), and the log records those sequences
//! as used (`Log::append_at`). The mirror's own last sequence is where it
//! goes on after a restart of either side. With `mirror_direct`, the
//! mirror also answers direct gets addressed to the origin (queue group
//! `_sys_`, as the reference), once it has caught up.

use std::rc::Rc;

use super::Source;
use crate::jetstream::config::{valid_asset_name, StreamConfig};
use crate::jetstream::errors::ApiError;
use crate::jetstream::stream::{store_error, Done, Stream};
use crate::shard::sink::{Handler, Owned};
use crate::shard::Shard;

/// A mirror answers direct gets for its origin once fewer than this many
/// messages are pending (the reference's `dgetCaughtUpThresh`).
const CAUGHT_UP: u64 = 10;
/// The queue group direct gets are answered in (the reference's
/// `dgetGroup`): the origin and its mirrors share the requests.
pub const DIRECT_GROUP: &str = "_sys_";

/// The reference's checks of a mirror config on its own (those needing
/// the origin's config are made at create: `check_origin`).
pub fn check_config(cfg: &StreamConfig) -> Result<(), ApiError> {
    let Some(m) = &cfg.mirror else {
        return Ok(());
    };
    let err = |code, d: &str| Err(ApiError::new_pub(400, code, d));
    if cfg.first_seq > 0 {
        return err(
            10143,
            "stream mirrors can not have first sequence configured",
        );
    }
    if !cfg.subjects.is_empty() {
        return err(10034, "stream mirrors can not contain subjects");
    }
    if !cfg.sources.is_empty() {
        return err(10031, "stream mirrors can not also contain other sources");
    }
    if cfg.allow_msg_counter {
        return err(10173, "stream mirrors can not also calculate counters");
    }
    if cfg.allow_atomic {
        return err(10198, "stream mirrors can not also use atomic publishing");
    }
    if cfg.allow_batched {
        return err(10209, "stream mirrors can not also use batch publishing");
    }
    if cfg.allow_msg_schedules {
        return err(10186, "stream mirrors can not also schedule messages");
    }
    if !m.filter_subject.is_empty() && !m.subject_transforms.is_empty() {
        return err(
            10150,
            "mirror with multiple subject transforms cannot also have a single subject filter",
        );
    }
    if cfg.subject_delete_marker_ttl > 0 {
        // Markers would use sequences the origin does not have.
        return Err(ApiError::invalid_config(
            "subject delete markers forbidden on mirrors",
        ));
    }
    for (i, t) in m.subject_transforms.iter().enumerate() {
        if !t.src.is_empty() && !crate::subject::is_valid_filter(t.src.as_bytes()) {
            return Err(ApiError::new_pub(
                400,
                10151,
                format!("mirror transform source: invalid subject {}", t.src),
            ));
        }
        if !t.dest.is_empty() {
            if let Err(e) = crate::jetstream::transform::Transform::new(&t.src, &t.dest) {
                return Err(ApiError::new_pub(
                    400,
                    10154,
                    format!("mirror transform: {e}"),
                ));
            }
        }
        let or_all = |s: &str| {
            if s.is_empty() {
                ">".to_string()
            } else {
                s.to_string()
            }
        };
        let collide = m.subject_transforms.iter().enumerate().any(|(j, o)| {
            j != i
                && crate::subject::filters_overlap(
                    or_all(&t.src).as_bytes(),
                    or_all(&o.src).as_bytes(),
                )
        });
        if collide {
            return err(10152, "mirror subject filters can not overlap");
        }
    }
    match &m.external {
        None if !valid_asset_name(&m.name) => err(10142, "mirrored stream name is invalid"),
        None => Ok(()),
        Some(e) => super::check_external(e),
    }?;
    if !m.filter_subject.is_empty() && !crate::subject::is_valid_filter(m.filter_subject.as_bytes())
    {
        return Err(ApiError::create_failed(format!(
            "subject filter '{}' for the mirror invalid subject",
            m.filter_subject
        )));
    }
    Ok(())
}

/// The checks against a local origin's config (`origin`: the mirrored
/// stream when it exists here): message size, and `mirror_direct` follows
/// the origin's `allow_direct`, as the reference sets it.
pub fn check_origin(cfg: &mut StreamConfig, origin: Option<&StreamConfig>) -> Result<(), ApiError> {
    let Some(o) = origin else {
        return Ok(());
    };
    if cfg.max_msg_size > 0 && o.max_msg_size > 0 && cfg.max_msg_size < o.max_msg_size {
        return Err(ApiError::new_pub(
            400,
            10030,
            "stream mirror must have max message size >= source",
        ));
    }
    cfg.mirror_direct = o.allow_direct;
    Ok(())
}

impl Source {
    /// Stores one delivery of the mirror's feed (its consumer bookkeeping
    /// is done): at the origin's sequence and time.
    pub(super) fn mirror_store(
        self: &Rc<Self>,
        shard: &Rc<Shard>,
        stream: &Rc<Stream>,
        orig: String,
        o: Owned,
        (sseq, ts): (u64, u64),
        pending: u64,
    ) {
        if pending < CAUGHT_UP && stream.meta.borrow().config.mirror_direct {
            self.direct_on(shard, stream);
        }
        let msg = Owned {
            subject: self.stored_subject(orig),
            reply: None,
            headers: o.headers,
            payload: o.payload,
        };
        let me = Rc::downgrade(self);
        let sw = Rc::downgrade(shard);
        let done: Done = Box::new(move |r: Result<u64, ApiError>| {
            if let (Some(me), Some(shard)) = (me.upgrade(), sw.upgrade()) {
                me.appended(&shard, sseq, r);
            }
        });
        ingest(stream, msg, sseq, ts, done);
    }

    /// Answers direct gets for the origin from here too.
    fn direct_on(&self, shard: &Shard, stream: &Rc<Stream>) {
        let mut st = self.st.borrow_mut();
        if !st.direct.is_empty() || st.stopped {
            return;
        }
        for subject in [
            format!("$JS.API.DIRECT.GET.{}", self.cfg.name),
            format!("$JS.API.DIRECT.GET.{}.>", self.cfg.name),
        ] {
            let w = Rc::downgrade(stream);
            let handler: Handler = Rc::new(move |m| {
                let Some(st) = w.upgrade() else { return };
                let Some(reply) = m.reply else { return };
                let o = Owned::of(m);
                let subject = String::from_utf8_lossy(&o.subject);
                let Some(msgs) = crate::jetstream::api::direct_replies(&st, &subject, &o.payload)
                else {
                    return;
                };
                if let Some(shard) = st.shard() {
                    for (headers, payload) in msgs {
                        let h = (!headers.is_empty()).then_some(&headers[..]);
                        shard.publish_internal(st.acc, reply, None, h, &payload);
                    }
                }
            });
            st.direct.push(shard.subscribe_internal(
                stream.acc,
                &subject,
                Some(DIRECT_GROUP),
                handler,
            ));
        }
    }

    /// Stops answering direct gets for the origin.
    pub(super) fn direct_off(&self, shard: &Shard) {
        for s in self.st.borrow_mut().direct.drain(..) {
            shard.remove_sub(&s);
        }
    }
}

/// Appends a mirrored message at `seq` with time `ts`. No header rules
/// and no de-duplication (the origin applied them); size, resources,
/// rollups (when allowed) and consumers as for any stored message.
fn ingest(stream: &Rc<Stream>, m: Owned, seq: u64, ts: u64, done: Done) {
    let (max_size, rollup_ok) = {
        let meta = stream.meta.borrow();
        let c = &meta.config;
        (c.max_msg_size, c.allow_rollup_hdrs && !c.deny_purge)
    };
    let size = m.headers.len() as i64 + m.payload.len() as i64;
    if max_size >= 0 && size > max_size {
        return done(Err(ApiError::msg_too_large()));
    }
    if let Err(e) = stream.check_resources() {
        return done(Err(e));
    }
    let rollup = rollup_ok
        .then(|| crate::jetstream::headers::get(&m.headers, crate::jetstream::headers::ROLLUP))
        .flatten()
        .and_then(crate::jetstream::stream::Rollup::of);
    let me = stream.clone();
    // Spawned in arrival order: records are staged in origin order.
    crate::runtime::spawn_local(async move {
        let r = me
            .log
            .append_at(seq, ts, m.subject.clone(), m.headers, m.payload)
            .await;
        match r {
            Ok((seq, _)) => {
                if let Some(kind) = rollup {
                    me.rollup(kind, &m.subject, seq).await;
                }
                me.report_usage();
                me.appended(seq, &m.subject);
                done(Ok(seq));
            }
            Err(e) => done(Err(store_error(&e))),
        }
    })
    .detach();
}
