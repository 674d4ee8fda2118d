//! What the real-browser tests share: the check that Node.js, `playwright-core` and Chromium are
//! installed (failing, never skipping, with how to install them), running a script of
//! `tests/browser/` under a hard time limit, and reading the PNG it leaves behind.
//!
//! The scripts (`tests/browser/checkout.mjs`, `tests/browser/ui_query.mjs`) share their own
//! half in `tests/browser/common.mjs`.

use crate::workspace_root;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Past this a script is killed from here (its own watchdog fires well before).
pub const HARD_LIMIT: Duration = Duration::from_secs(120);

/// How to install what the browser tests need; every failure to find it says this.
pub const INSTALL: &str = "install the browser tools from the workspace root with \
    `bash -c '. scripts/browser.sh && ensure_browser_tools'` (scripts/test.sh does this before \
    the tests): it installs Debian's chromium (`apt-get install chromium`) and runs \
    `npm ci --prefix tests/browser` (playwright-core)";

/// `tests/browser`: the scripts and their `node_modules`.
pub fn browser_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

/// Fails (never skips) with how to install whatever the browser test is missing.
pub fn require_browser_tools() {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {
            // `v20.20.2`: playwright-core needs 20 or newer.
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let major = version
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok());
            assert!(
                major.is_some_and(|m| m >= 20),
                "node is {version}: the browser test needs Node.js 20 or newer; {INSTALL}"
            );
        }
        Ok(out) => panic!(
            "`node --version` failed ({}): the browser test needs Node.js 20+ with npm; {INSTALL}",
            out.status
        ),
        Err(e) => panic!(
            "`node` cannot be run ({e}): the browser test needs Node.js 20+ with npm on PATH; \
             {INSTALL}"
        ),
    }
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: the npm packages of the browser test are not installed; {INSTALL}",
        playwright.display()
    );
    let chromium =
        std::env::var("ORDERFLOW_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "no chromium at {chromium} (set ORDERFLOW_CHROMIUM to use another): {INSTALL}"
    );
}

/// How a script run ended, with all it printed.
pub struct Run {
    /// It exited with status 0 (a killed script did not).
    pub success: bool,
    /// Its exit status, or `killed after ...` past [`HARD_LIMIT`].
    pub status: String,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Fails unless the script exited with status 0, with all it printed: `the <check> check
    /// failed (<status>) after <elapsed>`.
    pub fn assert_success(&self, check: &str) {
        assert!(
            self.success,
            "the {check} check failed ({}) after {:?}\n--- stderr\n{}\n--- stdout\n{}",
            self.status, self.elapsed, self.stderr, self.stdout
        );
    }

    /// What the script saw: its last non-empty line on stdout, parsed as JSON (it prints exactly
    /// one such line); fails when that is not JSON.
    pub fn json_line(&self, script_name: &str) -> Value {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        eprintln!("{script_name} took {:?} and saw {line}", self.elapsed);
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("no JSON line from {script_name} ({e}):\n{}", self.stdout))
    }
}

/// Runs `node tests/browser/<script_name> args...` from the workspace root, draining its stdout
/// and stderr, and kills it past [`HARD_LIMIT`]. Blocks: call it off the async runtime.
pub fn run_node_script(script_name: &str, args: &[String]) -> Run {
    let started = Instant::now();
    let script = browser_dir().join(script_name);
    let mut child = Command::new("node")
        .arg(&script)
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting node {}: {e}; {INSTALL}", script.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let (success, status) = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break (status.success(), status.to_string());
        }
        if started.elapsed() > HARD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break (false, format!("killed after {HARD_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        success,
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// The PNG signature followed by an IHDR chunk.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR")
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    (be(16), be(20))
}

/// The texts of the QR codes in a PNG picture (a screenshot of a page), read the way a phone's
/// camera app would: greyscale, then `rqrr` finds and decodes every code in it.
pub fn decode_qr_codes(png_bytes: &[u8]) -> Vec<String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    // Palette and 16-bit pictures come out as 8-bit samples.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a readable PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG of sane size")];
    let frame = reader.next_frame(&mut pixels).expect("the PNG's pixels");
    let channels = frame.color_type.samples();
    let (width, height) = (frame.width as usize, frame.height as usize);
    let grey = |x: usize, y: usize| -> u8 {
        let at = (y * width + x) * channels;
        match channels {
            1 | 2 => pixels[at],
            // Luma from RGB; alpha (a screenshot's is opaque) ignored.
            _ => {
                let [r, g, b] = [pixels[at], pixels[at + 1], pixels[at + 2]].map(u32::from);
                u8::try_from((r * 299 + g * 587 + b * 114) / 1000).unwrap_or(u8::MAX)
            }
        }
    };
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, grey);
    image
        .detect_grids()
        .into_iter()
        .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
        .collect()
}
