//! Retention by consumers: under `workqueue` a message goes once a
//! consumer acked it, under `interest` once every consumer whose filter
//! takes it did (and when the last interested consumer leaves); purges
//! make consumers let go of what is no longer stored.

use super::config::Retention;
use super::stream::Stream;

impl Stream {
    /// A consumer acked these sequences: under work-queue retention they
    /// go; under interest retention once every interested consumer acked.
    pub fn acked(&self, seqs: &[u64]) {
        let retention = self.meta.borrow().config.retention;
        let gone: Vec<u64> = match retention {
            Retention::Limits => return,
            Retention::WorkQueue => seqs.to_vec(),
            Retention::Interest => seqs
                .iter()
                .copied()
                .filter(|q| self.all_acked(*q))
                .collect(),
        };
        if gone.is_empty() {
            return;
        }
        let Some(me) = self.this() else { return };
        crate::runtime::spawn_local(async move {
            for q in gone {
                let _ = me.log.delete(q, false).await;
            }
            me.report_usage();
        })
        .detach();
    }

    /// Every consumer interested in message `seq` has acked it.
    fn all_acked(&self, seq: u64) -> bool {
        let Ok(m) = self.log.get(seq) else {
            return false;
        };
        self.consumers
            .borrow()
            .values()
            .filter(|c| c.wants(&m.subject))
            .all(|c| c.state.borrow().acked(seq))
    }

    /// Interest retention after a consumer left: messages no remaining
    /// consumer still needs go.
    pub(crate) async fn drop_uninterested(&self) {
        let first = self.log.state(false).first_seq;
        let mut seq = first;
        let mut gone = Vec::new();
        while let Ok(Some(m)) = self.log.next_msg(seq, &broker_edge_storage::Filter::all()) {
            seq = m.seq + 1;
            let keep = self
                .consumers
                .borrow()
                .values()
                .any(|c| c.wants(&m.subject) && !c.state.borrow().acked(m.seq));
            if !keep {
                gone.push(m.seq);
            }
        }
        for q in gone {
            let _ = self.log.delete(q, false).await;
        }
        self.report_usage();
    }

    /// After a purge: consumers let go of what is no longer there.
    pub fn after_purge(&self) {
        let first = self.log.state(false).first_seq;
        for c in self.consumers.borrow().values() {
            c.forget_below(first);
        }
    }
}
