//! Test support for vcam (`vcam/vcam.c`), the user-space V4L2 camera that stands in for
//! `/dev/video*` on machines without one: building the preload library and writing camera
//! descriptions. See PROTOCOL.md, "Testing without a camera".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::uvc::Fourcc;

/// The environment variable naming the directory of camera descriptions.
pub const DIR_VAR: &str = "APG_VCAM_DIR";

/// Compiles vcam into `out_dir` (once; later calls reuse it) and returns the library's path,
/// for `LD_PRELOAD`. Needs a C compiler: `$CC`, else `cc`.
///
/// # Panics
/// When there is no compiler or the source does not build: a test cannot go on without it.
pub fn library(out_dir: &Path) -> PathBuf {
    // Tests of one binary run in parallel threads: one builds, the others wait and reuse.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("vcam/vcam.c");
    let path = out_dir.join("libvcam.so");
    let fresh = |p: &Path| {
        let modified = |q: &Path| std::fs::metadata(q).and_then(|m| m.modified()).ok();
        modified(p).is_some_and(|built| modified(&source).is_some_and(|src| built >= src))
    };
    if fresh(&path) {
        return path;
    }
    std::fs::create_dir_all(out_dir).expect("create the directory for vcam");
    // Built under a private name and renamed, so parallel test binaries never load half a file.
    let partial = out_dir.join(format!("libvcam.{}.so", std::process::id()));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&compiler)
        .args(["-shared", "-fPIC", "-O1", "-Wall", "-o"])
        .arg(&partial)
        .arg(&source)
        .args(["-ldl", "-lpthread"])
        .status()
        .unwrap_or_else(|e| panic!("vcam needs a C compiler ({compiler}): {e}"));
    assert!(
        status.success(),
        "{compiler} could not build {}",
        source.display()
    );
    std::fs::rename(&partial, &path).expect("move the vcam library into place");
    path
}

/// One emulated camera: what `VIDIOC_QUERYCAP` says and the modes it streams.
#[derive(Debug, Clone)]
pub struct VirtualCamera {
    /// Card name.
    pub card: String,
    /// Bus path, the camera's identity across replugs.
    pub bus: String,
    /// A UVC metadata node instead of a capture node.
    pub metadata: bool,
    /// Frames after which the camera hangs (stays plugged in but sends nothing).
    pub stall_after: Option<u64>,
    /// Modes, each with the file whose bytes every frame carries (a JPEG for MJPEG, raw
    /// pixels otherwise).
    pub modes: Vec<(Fourcc, u32, u32, u32, PathBuf)>,
}

impl VirtualCamera {
    /// A capture node with no modes yet.
    pub fn new(card: &str, bus: &str) -> Self {
        Self {
            card: card.into(),
            bus: bus.into(),
            metadata: false,
            stall_after: None,
            modes: Vec::new(),
        }
    }

    /// Adds a mode.
    pub fn mode(
        mut self,
        fourcc: Fourcc,
        width: u32,
        height: u32,
        fps: u32,
        payload: &Path,
    ) -> Self {
        self.modes
            .push((fourcc, width, height, fps, payload.to_path_buf()));
        self
    }

    /// Plugs the camera in as `dir/node` (e.g. `video0`) and returns that path; deleting the
    /// file unplugs it.
    pub fn plug(&self, dir: &Path, node: &str) -> PathBuf {
        let mut text = format!("card {}\nbus {}\n", self.card, self.bus);
        if self.metadata {
            text.push_str("metadata\n");
        }
        if let Some(n) = self.stall_after {
            text.push_str(&format!("stall_after {n}\n"));
        }
        for (fourcc, width, height, fps, payload) in &self.modes {
            let code = String::from_utf8_lossy(&fourcc.code())
                .trim_end()
                .to_string();
            text.push_str(&format!(
                "format {code} {width} {height} {fps} {}\n",
                payload.display()
            ));
        }
        let path = dir.join(node);
        std::fs::write(&path, text).expect("write the vcam description");
        path
    }
}
