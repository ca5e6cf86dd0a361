//! Log lines in nats-server's format, so tools that read its log keep
//! working: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//! Built on `tracing`; events with target `fatal` print as `[FTL]`.

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
        let tag = if meta.target() == "fatal" {
            "FTL"
        } else {
            match *meta.level() {
                Level::ERROR => "ERR",
                Level::WARN => "WRN",
                Level::INFO => "INF",
                Level::DEBUG => "DBG",
                Level::TRACE => "TRC",
            }
        };
        write!(w, "[{}] ", self.pid)?;
        if self.logtime {
            let now = chrono::Local::now();
            write!(w, "{} ", now.format("%Y/%m/%d %H:%M:%S%.6f"))?;
        }
        write!(w, "[{tag}] ")?;
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
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
        });
    let _ = tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt_layer)
        .try_init();
    Ok(())
}
