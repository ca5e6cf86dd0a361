//! Log lines in nats-server's format, so tools that read its log keep
//! working: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//! Built on `tracing`; events with target `fatal` print as `[FTL]`.
//!
//! Under systemd, with stderr connected to the journal (`JOURNAL_STREAM`
//! names stderr's device and inode), the journal stamps each line itself:
//! the date and time are left out and the line starts with a syslog
//! priority (`<6>[pid] [INF] message`), which journald strips and files
//! under that priority so `journalctl -p err` works.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

struct NatsFormat {
    pid: u32,
    logtime: bool,
    /// Lines go to the journal (see the module doc).
    journal: bool,
}

/// The level tag nats-server prints and the matching syslog priority.
fn level_tag(fatal: bool, level: Level) -> (&'static str, u8) {
    if fatal {
        return ("FTL", 2);
    }
    match level {
        Level::ERROR => ("ERR", 3),
        Level::WARN => ("WRN", 4),
        Level::INFO => ("INF", 6),
        Level::DEBUG => ("DBG", 7),
        Level::TRACE => ("TRC", 7),
    }
}

/// Everything before the message: `[pid] date time [TAG] `, or for the
/// journal `<priority>[pid] [TAG] ` (the journal has its own timestamp).
fn write_prefix(
    w: &mut impl fmt::Write,
    pid: u32,
    tag: (&str, u8),
    logtime: bool,
    journal: bool,
) -> fmt::Result {
    if journal {
        return write!(w, "<{}>[{pid}] [{}] ", tag.1, tag.0);
    }
    write!(w, "[{pid}] ")?;
    if logtime {
        let now = chrono::Local::now();
        write!(w, "{} ", now.format("%Y/%m/%d %H:%M:%S%.6f"))?;
    }
    write!(w, "[{}] ", tag.0)
}

/// True when `journal_stream` (the value of `JOURNAL_STREAM`, `dev:inode`)
/// names the file `fd` is open on, as sd_journal_stream_fd(3) says to check.
fn is_journal(journal_stream: &str, fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // fstat through a duplicate, closed again on return.
    let Ok(meta) = fd
        .try_clone_to_owned()
        .and_then(|f| std::fs::File::from(f).metadata())
    else {
        return false;
    };
    meta.dev() == dev && meta.ino() == ino
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let tag = level_tag(meta.target() == "fatal", *meta.level());
        write_prefix(&mut w, self.pid, tag, self.logtime, self.journal)?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Where log lines go: stderr or a file, shared by all threads.
#[derive(Clone)]
struct Sink(Arc<Mutex<Box<dyn Write + Send>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut w) => w.write(buf),
            Err(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock() {
            Ok(mut w) => w.flush(),
            Err(_) => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        self.clone()
    }
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

fn filter(debug: bool, trace: bool) -> tracing_subscriber::EnvFilter {
    let level = if trace {
        "trace"
    } else if debug {
        "debug"
    } else {
        "info"
    };
    // Our own lines at the chosen level; libraries only when they warn.
    tracing_subscriber::EnvFilter::new(format!(
        "warn,broker_edge={level},broker_edge_storage={level},fatal=trace"
    ))
}

/// Applies reloaded `debug`/`trace` settings to the running logger.
pub fn set_levels(debug: bool, trace: bool) {
    if let Some(h) = FILTER.get() {
        let _ = h.reload(filter(debug, trace));
    }
}

/// Installs the global logger. `debug`/`trace` follow -D/-V.
pub fn init(file: Option<&Path>, debug: bool, trace: bool, logtime: bool) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Only stderr can be the journal stream; a log file never is.
    let journal = file.is_none()
        && std::env::var("JOURNAL_STREAM").is_ok_and(|v| is_journal(&v, std::io::stderr().as_fd()));
    let out: Box<dyn Write + Send> = match file {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let (filter_layer, handle) = tracing_subscriber::reload::Layer::new(filter(debug, trace));
    let _ = FILTER.set(handle);
    let fmt_layer = tracing_subscriber::fmt::layer()
        .with_writer(Sink(Arc::new(Mutex::new(out))))
        .event_format(NatsFormat {
            pid: std::process::id(),
            logtime,
            journal,
        });
    let _ = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt_layer)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    fn prefix(tag: (&str, u8), logtime: bool, journal: bool) -> String {
        let mut s = String::new();
        write_prefix(&mut s, 42, tag, logtime, journal).unwrap();
        s
    }

    #[test]
    fn journal_lines_have_no_timestamp_but_keep_the_level_tag() {
        let info = level_tag(false, Level::INFO);
        assert_eq!(prefix(info, true, true), "<6>[42] [INF] ");
        assert_eq!(prefix(info, false, true), "<6>[42] [INF] ");
        assert_eq!(
            prefix(level_tag(false, Level::ERROR), true, true),
            "<3>[42] [ERR] "
        );
        assert_eq!(
            prefix(level_tag(false, Level::WARN), true, true),
            "<4>[42] [WRN] "
        );
        assert_eq!(
            prefix(level_tag(true, Level::ERROR), true, true),
            "<2>[42] [FTL] "
        );
        assert_eq!(
            prefix(level_tag(false, Level::TRACE), true, true),
            "<7>[42] [TRC] "
        );
    }

    #[test]
    fn other_lines_keep_nats_server_format() {
        let info = level_tag(false, Level::INFO);
        assert_eq!(prefix(info, false, false), "[42] [INF] ");
        let line = prefix(info, true, false);
        // [42] 2006/01/02 15:04:05.000000 [INF]
        assert!(line.starts_with("[42] "), "{line}");
        assert!(line.ends_with(" [INF] "), "{line}");
        let stamp = &line[5..line.len() - 7];
        assert_eq!(stamp.len(), 26, "{line}");
        assert_eq!(&stamp[4..5], "/", "{line}");
        assert_eq!(&stamp[19..20], ".", "{line}");
    }

    #[test]
    fn journal_stream_must_name_the_descriptor() {
        let f = tempfile::tempfile().unwrap();
        let m = f.metadata().unwrap();
        let other = tempfile::tempfile().unwrap();
        let mine = format!("{}:{}", m.dev(), m.ino());
        assert!(is_journal(&mine, f.as_fd()));
        assert!(!is_journal(&mine, other.as_fd()));
        assert!(!is_journal("", f.as_fd()));
        assert!(!is_journal("garbage", f.as_fd()));
        assert!(!is_journal(&format!("{}:x", m.dev()), f.as_fd()));
    }
}
