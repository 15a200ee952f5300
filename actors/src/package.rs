//! Live packages on demand: a stream's LL-HLS and DASH, cut once into CMAF segments and parts
//! ([`estuary_protocols::cmaf`]) and served from memory.
//!
//! The first playlist or MPD request of a live stream asks its stream actor for a package
//! ([`crate::messages::StartPackage`]); the actor subscribes a [`Packager`] (on the segmenter
//! thread) that cuts the frames into the package the HTTP server reads. Requests touch the
//! package; one that nobody asked for in `hls.idle_s` stops, and its stream's next request
//! starts it again with the numbering continued. A package of an ended stream stays (its
//! playlist says `EXT-X-ENDLIST`) until it is idle; a new publish continues it after a
//! discontinuity.
//!
//! Waiting: a blocking playlist reload, a preload-hinted part and the first request of a
//! fresh package wait on the package's version (a `watch` bumped by every new part), never by
//! polling.

use crate::messages::{Fault, InjectFault};
use crate::node::bounded::BoundedMap;
use crate::node::NodeContext;
use crate::stream::Gaps;
use actix::prelude::*;
use estuary_protocols::cmaf::{Package, Settings};
use estuary_protocols::media::MediaFrame;
use estuary_storage::StreamKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// One stream's package, shared by its packager (writing) and the HTTP server (reading).
pub struct LivePackage {
    /// The stream.
    pub key: StreamKey,
    state: RwLock<Package>,
    version: watch::Sender<u64>,
    last_request_ms: AtomicI64,
    /// Out of the table (stopped for having no viewer): whoever kept it must look the stream
    /// up again (its next request starts a new package).
    retired: std::sync::atomic::AtomicBool,
    /// The HLS playlist as last rendered, full and delta, with the version it was rendered
    /// at. Every viewer reloads it each part; it changes only with the package.
    rendered: Mutex<[Option<(u64, Arc<Rendered>)>; 2]>,
}

/// A playlist or manifest as sent: its text, its ETag, and its gzip form made the first time
/// a client asks for it (once per change of a shared playlist, however many viewers).
pub struct Rendered {
    pub text: Arc<str>,
    pub etag: Arc<str>,
    gzip: std::sync::OnceLock<bytes::Bytes>,
    /// Compression level: the default for a shared playlist (compressed once), the fastest
    /// for a text rendered for one request (a tokenised playlist, one with rendition reports,
    /// an MPD), which is compressed on every request.
    level: flate2::Compression,
}

impl Rendered {
    /// A text many responses share.
    pub fn new(text: impl Into<Arc<str>>) -> Rendered {
        Rendered::with_level(text.into(), flate2::Compression::default())
    }

    /// A text rendered for one response.
    pub fn once(text: impl Into<Arc<str>>) -> Rendered {
        Rendered::with_level(text.into(), flate2::Compression::fast())
    }

    fn with_level(text: Arc<str>, level: flate2::Compression) -> Rendered {
        let etag = etag_of(&text);
        Rendered { text, etag, gzip: std::sync::OnceLock::new(), level }
    }

    /// The text gzip-compressed.
    pub fn gzipped(&self) -> bytes::Bytes {
        self.gzip.get_or_init(|| gzip(self.text.as_bytes(), self.level)).clone()
    }
}

/// `data` as a gzip member (RFC 1952) at `level`.
pub fn gzip(data: &[u8], level: flate2::Compression) -> bytes::Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), level);
    // Writing to a Vec does not fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default().into()
}

impl LivePackage {
    fn new(key: StreamKey, package: Package) -> LivePackage {
        LivePackage { key, state: RwLock::new(package), version: watch::channel(0).0, last_request_ms: AtomicI64::new(crate::unix_ms()), retired: std::sync::atomic::AtomicBool::new(false), rendered: Mutex::new([None, None]) }
    }

    /// The LL-HLS playlist of the package now (full, or with `skip` a delta update) and its
    /// ETag, rendered once per change of the package.
    pub fn hls_playlist(&self, skip: bool, reports: &[(String, u64, Option<usize>)]) -> Arc<Rendered> {
        if !reports.is_empty() {
            // Other renditions' state is in it: rendered for this request.
            return Arc::new(Rendered::once(self.read(|p| p.render_hls(&self.key.stream, skip, reports))));
        }
        let version = *self.version.borrow();
        let mut rendered = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, shared)) = &rendered[skip as usize] {
            if *at == version {
                return shared.clone();
            }
        }
        let shared = Arc::new(Rendered::new(self.read(|p| p.render_hls(&self.key.stream, skip, &[]))));
        rendered[skip as usize] = Some((version, shared.clone()));
        shared
    }

    /// Reads the package.
    pub fn read<R>(&self, f: impl FnOnce(&Package) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Changes the package; when `f` says something changed, the version is bumped before the
    /// lock is released, so whoever sees the new state sees the new version (a playlist cached
    /// under the old version is never served for it).
    fn write_and_bump(&self, f: impl FnOnce(&mut Package) -> bool) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if f(&mut state) {
            self.changed();
        }
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// A player asked for something of it: it stays running.
    pub fn touch(&self) {
        self.last_request_ms.store(crate::unix_ms(), Ordering::Relaxed);
    }

    /// Taken out of the table, ended or not: not the stream's package any more.
    pub fn retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The package's version: it changes whenever the package does (a new part, an end, its
    /// leaving the table).
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Waits until the version is no longer `version`, or until `deadline`; false at the
    /// deadline.
    pub async fn changed_since(&self, version: u64, deadline: tokio::time::Instant) -> bool {
        let mut receiver = self.version.subscribe();
        let changed = tokio::time::timeout_at(deadline, receiver.wait_for(|now| *now != version)).await;
        matches!(changed, Ok(Ok(_)))
    }

    /// Waits (up to `timeout`) until `ready` holds; returns whether it does. A request
    /// waiting is a viewer asking: the package counts as asked for while it waits (a first
    /// playlist request waits for two segments, which may take longer than `hls.idle_s`).
    pub async fn wait_for(&self, ready: impl Fn(&Package) -> bool, timeout: Duration) -> bool {
        let mut version = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.touch();
            if self.read(&ready) {
                return true;
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.read(&ready),
            }
        }
    }

    /// The package has `segments` complete segments to list, or can never have (ended).
    pub fn listable(package: &Package, segments: usize) -> bool {
        package.ended || package.segments.iter().filter(|s| s.complete).count() >= segments
    }
}

/// A strong ETag of `text`.
pub fn etag_of(text: &str) -> Arc<str> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish()).into()
}

/// Stopped packages' next segment numbers kept at most (numbering continues if the stream is
/// asked for again, so cached segment names are never reused).
const MAX_REMEMBERED: usize = 10_000;

/// A node's live packages.
pub struct LivePackages {
    running: Mutex<HashMap<StreamKey, Arc<LivePackage>>>,
    next_sequence: Mutex<BoundedMap<StreamKey, (u64, u32)>>,
}

impl Default for LivePackages {
    fn default() -> Self {
        LivePackages { running: Mutex::new(HashMap::new()), next_sequence: Mutex::new(BoundedMap::new(MAX_REMEMBERED)) }
    }
}

impl LivePackages {
    /// The package of `key`, if one runs (or an ended one is kept).
    pub fn get(&self, key: &StreamKey) -> Option<Arc<LivePackage>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    /// Packages running or kept.
    pub fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A package for a (new) packager of `key`: an ended one continues, otherwise a fresh one
    /// numbered after the last package of the stream.
    fn begin(&self, key: &StreamKey, settings: Settings) -> Arc<LivePackage> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let package = match running.remove(key) {
            Some(old) => {
                let mut placeholder = Package::new(settings, 0);
                placeholder.finish();
                let mut package = std::mem::replace(&mut *old.state.write().unwrap_or_else(|e| e.into_inner()), placeholder);
                package.resume();
                // The old package's waiters learn that it changed hands (it is empty now).
                old.retired.store(true, Ordering::Release);
                old.changed();
                package
            }
            None => {
                let (first, init) = self.next_sequence.lock().unwrap_or_else(|e| e.into_inner()).remove(key).unwrap_or((0, 0));
                Package::continuing(settings, first, init)
            }
        };
        let live = Arc::new(LivePackage::new(key.clone(), package));
        running.insert(key.clone(), live.clone());
        live
    }

    /// `package` stops: it leaves the table (if it is still the stream's) and its numbering is
    /// remembered.
    fn end(&self, package: &Arc<LivePackage>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.get(&package.key).is_some_and(|current| Arc::ptr_eq(current, package)) {
            running.remove(&package.key);
            let next = package.read(|p| (p.next_sequence(), p.next_init()));
            self.next_sequence.lock().unwrap_or_else(|e| e.into_inner()).insert(package.key.clone(), next);
        }
        // Requests held on it, and connections that kept it, look the stream up again.
        package.retired.store(true, Ordering::Release);
        package.changed();
    }

    fn is_current(&self, package: &Arc<LivePackage>) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).get(&package.key).is_some_and(|current| Arc::ptr_eq(current, package))
    }
}

/// Cuts one stream's frames into its live package.
pub struct Packager {
    node: NodeContext,
    _counted: crate::node::census::Counted,
    package: Arc<LivePackage>,
    rx: Option<mpsc::Receiver<Arc<MediaFrame>>>,
    gaps: Gaps,
    idle: Duration,
    capped: u64,
}

impl Packager {
    /// Starts `key`'s package (or continues its ended one) fed by `rx`; returns the package.
    pub fn begin(node: &NodeContext, key: &StreamKey, settings: &crate::settings::SegmentSettings, rx: mpsc::Receiver<Arc<MediaFrame>>, gaps: Gaps) -> (Arc<LivePackage>, Packager) {
        let package = node.packages.begin(key, settings.package());
        let packager = Packager { _counted: node.census.enter("packager"), node: node.clone(), package: package.clone(), rx: Some(rx), gaps, idle: settings.idle, capped: 0 };
        (package, packager)
    }

    fn on_frame(&mut self, frame: Arc<MediaFrame>) {
        let gap = self.gaps.ended_by(&frame);
        let now = crate::unix_ms();
        let mut capped = self.capped;
        self.package.write_and_bump(|package| {
            let mut changed = false;
            if let Some(gap) = &gap {
                tracing::warn!(stream = %self.package.key, lost_frames = gap.lost_frames, reason = gap.reason, "live package lost frames; the segment before the gap ends and the next starts at a keyframe");
                changed |= package.gap();
            }
            changed |= package.push(frame, now);
            capped = package.capped;
            changed
        });
        if capped != self.capped {
            self.capped = capped;
            tracing::warn!(stream = %self.package.key, capped, "live package segment grew past hls.max_segment_bytes before a keyframe; it ends there and the next starts at a keyframe");
        }
    }

    /// After a panic: the segment in progress ends; the next starts at a keyframe after a
    /// discontinuity.
    fn restart(&mut self) {
        let _ = crate::node::supervision::catch(|| self.package.write_and_bump(|package| {
            package.gap();
            true
        }));
    }
}

impl Actor for Packager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(rx) = self.rx.take() {
            ctx.add_stream(ReceiverStream::new(rx));
        }
        let (segment_ms, part_ms) = self.package.read(|p| (p.settings().segment_ms, p.settings().part_ms));
        tracing::info!(stream = %self.package.key, segment_ms, part_ms, idle_s = self.idle.as_secs(), "live package started (LL-HLS and DASH on demand)");
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            if !act.node.packages.is_current(&act.package) {
                // A new packager took the stream over (a republish).
                ctx.stop();
                return;
            }
            let idle_ms = crate::unix_ms() - act.package.last_request_ms.load(Ordering::Relaxed);
            if idle_ms > act.idle.as_millis() as i64 {
                tracing::info!(stream = %act.package.key, idle_s = idle_ms / 1000, "live package stopped: no player asked for it");
                act.node.packages.end(&act.package);
                ctx.stop();
            }
        });
    }
}

impl StreamHandler<Arc<MediaFrame>> for Packager {
    fn handle(&mut self, frame: Arc<MediaFrame>, _: &mut Self::Context) {
        if let Err(panic) = crate::node::supervision::catch(|| self.on_frame(frame)) {
            self.node.restarts.panicked("packager", &format_args!("live package of {}", self.package.key), &panic);
            self.restart();
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The stream ended: the package says so and stays until nobody asks for it.
        let ended = crate::node::supervision::catch(|| {
            self.package.write_and_bump(|package| {
                package.finish();
                true
            })
        });
        if let Err(panic) = ended {
            self.node.restarts.panicked("packager", &format_args!("live package of {} (end)", self.package.key), &panic);
        }
        tracing::info!(stream = %self.package.key, "live package ended with its stream");
    }
}

impl Handler<InjectFault> for Packager {
    type Result = ();

    fn handle(&mut self, msg: InjectFault, ctx: &mut Self::Context) {
        tracing::warn!(stream = %self.package.key, fault = ?msg.0, "fault injected into the live packager");
        match msg.0 {
            Fault::Panic => {
                if let Err(panic) = crate::node::supervision::catch(|| panic!("fault injected into the live packager")) {
                    self.node.restarts.panicked("packager", &format_args!("live package of {}", self.package.key), &panic);
                    self.restart();
                }
            }
            Fault::Stall(duration) => ctx.wait(actix::fut::wrap_future(tokio::time::sleep(duration))),
            Fault::SlowWrites { .. } => {}
        }
    }
}
