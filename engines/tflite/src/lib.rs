//! The TFLite runtime of apg-biometric.
//!
//! Every neural model in the project runs through this crate. It loads LiteRT's `libLiteRt.so`
//! at run time through `edgefirst-tflite` (the library exports LiteRT's `LiteRt*` C API, so the
//! `CompiledModel` path is used), and it owns the three things every engine would otherwise get
//! wrong on its own:
//!
//! - **Finding the library.** [`locate_library`] tries `APG_LITERT_LIB`, the packaged location
//!   `/usr/lib/apg-biometric/libLiteRt.so`, and `shared/runtime/libLiteRt.so` beside the working
//!   directory or any of its ancestors (the development layout). The runtime is loaded once per
//!   process ([`Runtime::global`]).
//! - **Threads.** A [`Model`] is compiled on its own worker thread, which owns the LiteRT model,
//!   the compiled model and the tensor buffers for the model's whole life. [`Model::run`] sends
//!   the input to that thread and waits for the output, so a `Model` is `Send + Sync` and calls
//!   from several threads are served one after another. Dropping the `Model` ends its thread.
//! - **Errors.** A missing library, a missing or corrupt model file and an input of the wrong
//!   size each have their own [`Error`] variant that names the file and says what to do.
//!
//! Only 32-bit float tensors are supported: every model the project ships uses them.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

use edgefirst_tflite::litert;
use edgefirst_tflite::Library;

/// Environment variable naming the `libLiteRt.so` to load.
pub const LIBRARY_ENV: &str = "APG_LITERT_LIB";

/// Where the packages install the runtime.
pub const PACKAGED_LIBRARY: &str = "/usr/lib/apg-biometric/libLiteRt.so";

/// Why the runtime or a model could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No `libLiteRt.so` was found.
    #[error(
        "the LiteRT runtime libLiteRt.so was not found (looked at: {tried}); install the \
         apg-biometric package, run models/fetch, or set {LIBRARY_ENV} to the library's path"
    )]
    LibraryNotFound {
        /// Every place that was looked at.
        tried: String,
    },
    /// The library exists but cannot be loaded or is not a LiteRT build.
    #[error("cannot load the LiteRT runtime {path}: {detail}; reinstall it with models/fetch")]
    LibraryUnusable {
        /// The library file.
        path: PathBuf,
        /// Loader message.
        detail: String,
    },
    /// The model file does not exist or cannot be read.
    #[error("model file {path} cannot be read: {detail}; run models/fetch to install the models")]
    ModelMissing {
        /// The model file.
        path: PathBuf,
        /// I/O message.
        detail: String,
    },
    /// The model file is not a valid TFLite model, or the runtime cannot compile it.
    #[error(
        "model file {path} is not a usable TFLite model ({detail}); it is corrupt or of the \
         wrong kind: run models/fetch, which checks every file's sha256"
    )]
    ModelCorrupt {
        /// The model file.
        path: PathBuf,
        /// Runtime message.
        detail: String,
    },
    /// The model's tensors are not what the caller expects.
    #[error("model {model}: {detail}")]
    Shape {
        /// Model name.
        model: String,
        /// Expected and actual shapes.
        detail: String,
    },
    /// Inference failed inside the runtime.
    #[error("model {model}: inference failed: {detail}")]
    Inference {
        /// Model name.
        model: String,
        /// Runtime message.
        detail: String,
    },
}

/// Element type and shape of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Dimensions, outermost first (e.g. `[1, 128, 128, 3]`).
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Finds `libLiteRt.so`: `APG_LITERT_LIB`, then the packaged path, then
/// `shared/runtime/libLiteRt.so` next to the working directory or one of its ancestors.
pub fn locate_library() -> Result<PathBuf, Error> {
    let mut tried = Vec::new();
    if let Some(path) = std::env::var_os(LIBRARY_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        tried.push(format!("{} (from {LIBRARY_ENV})", path.display()));
    }
    let packaged = PathBuf::from(PACKAGED_LIBRARY);
    if packaged.is_file() {
        return Ok(packaged);
    }
    tried.push(PACKAGED_LIBRARY.to_owned());
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            for candidate in [
                dir.join("shared/runtime/libLiteRt.so"),
                dir.join("models/runtime/libLiteRt.so"),
            ] {
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        tried.push(format!(
            "shared/runtime and models/runtime above {}",
            cwd.display()
        ));
    }
    Err(Error::LibraryNotFound {
        tried: tried.join(", "),
    })
}

/// The loaded LiteRT runtime (one per process).
pub struct Runtime {
    library: &'static Library,
    env: &'static litert::Environment<'static>,
    path: PathBuf,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

static GLOBAL: OnceLock<Result<Runtime, Error>> = OnceLock::new();

impl Runtime {
    /// The process-wide runtime, loaded on first use from [`locate_library`].
    ///
    /// The library and its environment live until the process exits: LiteRT's handles borrow
    /// them, and unloading a runtime that worker threads may still use is never worth it.
    pub fn global() -> Result<&'static Runtime, Error> {
        GLOBAL
            .get_or_init(|| Self::load(&locate_library()?))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn load(path: &Path) -> Result<Runtime, Error> {
        let unusable = |detail: String| Error::LibraryUnusable {
            path: path.to_path_buf(),
            detail,
        };
        let library = Library::from_path(path).map_err(|e| unusable(e.to_string()))?;
        if !library.has_litert() {
            let missing = library.litert_missing_symbol().unwrap_or("LiteRt*");
            return Err(unusable(format!(
                "it does not export the LiteRT C API (missing {missing})"
            )));
        }
        let library: &'static Library = Box::leak(Box::new(library));
        let env = litert::Environment::new(library).map_err(|e| unusable(e.to_string()))?;
        let env: &'static litert::Environment<'static> = Box::leak(Box::new(env));
        Ok(Runtime {
            library,
            env,
            path: path.to_path_buf(),
        })
    }

    /// Path of the loaded library.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

type Reply = mpsc::Sender<Result<Vec<Vec<f32>>, Error>>;

struct Job {
    inputs: Vec<Vec<f32>>,
    reply: Reply,
}

/// A compiled model served by its own worker thread.
#[derive(Debug)]
pub struct Model {
    name: String,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    jobs: mpsc::Sender<Job>,
}

impl Model {
    /// Loads and compiles the model at `path` on the CPU, with the process-wide runtime.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|e| Error::ModelMissing {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        // Check the flatbuffer identifier first: LiteRT's own message for a random file is
        // a bare status code.
        if bytes.len() < 8 || &bytes[4..8] != b"TFL3" {
            return Err(Error::ModelCorrupt {
                path,
                detail: "the file lacks the TFLite identifier TFL3".to_owned(),
            });
        }
        let runtime = Runtime::global()?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let thread_path = path.clone();
        let thread_name = name.clone();
        thread::Builder::new()
            .name(format!("tflite-{name}"))
            .spawn(move || serve(runtime, thread_path, thread_name, bytes, ready_tx, job_rx))
            .map_err(|e| Error::Inference {
                model: name.clone(),
                detail: format!("cannot start its thread: {e}"),
            })?;
        let (inputs, outputs) = ready_rx.recv().map_err(|_| Error::ModelCorrupt {
            path: path.clone(),
            detail: "the runtime thread stopped while compiling".to_owned(),
        })??;
        Ok(Self {
            name,
            inputs,
            outputs,
            jobs,
        })
    }

    /// Model name (the file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Input tensors.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// Output tensors.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// Checks that input `index` has exactly `shape`, for engines to call once after loading.
    pub fn expect_input(&self, index: usize, shape: &[usize]) -> Result<(), Error> {
        match self.inputs.get(index) {
            Some(t) if t.shape == shape => Ok(()),
            other => Err(Error::Shape {
                model: self.name.clone(),
                detail: format!(
                    "input {index} should be {shape:?} but is {:?}; is this the right model file?",
                    other.map(|t| &t.shape)
                ),
            }),
        }
    }

    /// Runs the model: one float slice per input tensor, one vector per output tensor.
    pub fn run(&self, inputs: &[&[f32]]) -> Result<Vec<Vec<f32>>, Error> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Shape {
                model: self.name.clone(),
                detail: format!(
                    "{} inputs given, the model has {}",
                    inputs.len(),
                    self.inputs.len()
                ),
            });
        }
        for (i, (given, info)) in inputs.iter().zip(&self.inputs).enumerate() {
            if given.len() != info.len() {
                return Err(Error::Shape {
                    model: self.name.clone(),
                    detail: format!(
                        "input {i} has {} values but the tensor {:?} needs {}",
                        given.len(),
                        info.shape,
                        info.len()
                    ),
                });
            }
        }
        let (reply, answer) = mpsc::channel();
        let job = Job {
            inputs: inputs.iter().map(|s| s.to_vec()).collect(),
            reply,
        };
        let stopped = || Error::Inference {
            model: self.name.clone(),
            detail: "the runtime thread has stopped".to_owned(),
        };
        self.jobs.send(job).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

fn tensor_info(ty: &litert::RankedTensorType, what: &str) -> Result<TensorInfo, String> {
    if ty.element_type != 1 {
        return Err(format!(
            "{what} has element type {} but only float32 is supported",
            ty.element_type
        ));
    }
    let rank = ty.layout.rank() as usize;
    let shape = ty.layout.dimensions[..rank.min(8)]
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{what} has a dynamic dimension")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorInfo { shape })
}

type Ready = mpsc::Sender<Result<(Vec<TensorInfo>, Vec<TensorInfo>), Error>>;

/// The worker thread of one model: compiles it, reports its tensors, then serves jobs until
/// the [`Model`] is dropped.
fn serve(
    runtime: &'static Runtime,
    path: PathBuf,
    name: String,
    bytes: Vec<u8>,
    ready: Ready,
    jobs: mpsc::Receiver<Job>,
) {
    let corrupt = |detail: String| Error::ModelCorrupt {
        path: path.clone(),
        detail,
    };
    let env = runtime.env;
    let model = match litert::Model::from_buffer(env, bytes) {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(corrupt(e.to_string())));
            return;
        }
    };
    let setup = (|| {
        let options = litert::Options::new(runtime.library)
            .and_then(|o| o.hardware_accelerators(litert::HwAccelerators::CPU))
            .map_err(|e| corrupt(e.to_string()))?;
        let compiled = litert::CompiledModel::create(env, &model, &options)
            .map_err(|e| corrupt(e.to_string()))?;
        let n_in = model.num_inputs(0).map_err(|e| corrupt(e.to_string()))?;
        let n_out = model.num_outputs(0).map_err(|e| corrupt(e.to_string()))?;
        let mut infos_in = Vec::new();
        let mut infos_out = Vec::new();
        let mut buf_in = Vec::new();
        let mut buf_out = Vec::new();
        for i in 0..n_in {
            let ty = model
                .input_tensor_type(0, i)
                .map_err(|e| corrupt(e.to_string()))?;
            infos_in.push(tensor_info(&ty, &format!("input {i}")).map_err(&corrupt)?);
            buf_in.push(
                compiled
                    .create_input_buffer(0, i)
                    .map_err(|e| corrupt(e.to_string()))?,
            );
        }
        for i in 0..n_out {
            let ty = model
                .output_tensor_type(0, i)
                .map_err(|e| corrupt(e.to_string()))?;
            infos_out.push(tensor_info(&ty, &format!("output {i}")).map_err(&corrupt)?);
            buf_out.push(
                compiled
                    .create_output_buffer(0, i)
                    .map_err(|e| corrupt(e.to_string()))?,
            );
        }
        Ok((compiled, infos_in, infos_out, buf_in, buf_out))
    })();
    let (mut compiled, infos_in, infos_out, mut buf_in, mut buf_out) = match setup {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok((infos_in, infos_out.clone()))).is_err() {
        return;
    }
    let failed = |detail: String| Error::Inference {
        model: name.clone(),
        detail,
    };
    let mut bytes = Vec::new();
    for job in jobs {
        let result = (|| {
            for (buffer, values) in buf_in.iter_mut().zip(&job.inputs) {
                bytes.clear();
                bytes.extend(values.iter().flat_map(|v| v.to_ne_bytes()));
                buffer
                    .write_bytes(&bytes)
                    .map_err(|e| failed(e.to_string()))?;
            }
            compiled
                .run(0, &mut buf_in, &mut buf_out)
                .map_err(|e| failed(e.to_string()))?;
            let mut outputs = Vec::with_capacity(buf_out.len());
            for (buffer, info) in buf_out.iter_mut().zip(&infos_out) {
                let raw = buffer.read_bytes().map_err(|e| failed(e.to_string()))?;
                let values: Vec<f32> = raw
                    .chunks_exact(4)
                    .take(info.len())
                    .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                outputs.push(values);
            }
            Ok(outputs)
        })();
        let _ = job.reply.send(result);
    }
}
