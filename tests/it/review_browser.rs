//! The HTML review in a real browser: headless Chromium opens the review of
//! the demo world (the fixture world is the same world as `examples/basic`,
//! which `reprofile demo` runs) with its avatars as small test images, and
//! takes a screenshot; the test decodes it and checks that every avatar was
//! drawn.
//!
//! Each avatar URL of the plan becomes a solid-colour PNG of its own colour:
//! one as an inline `data:` URL, the others served by a loopback HTTP server
//! the test runs. The screenshot must then hold, for each colour, the pixels
//! of as many 96×96 images as the page has `<img>` elements of that URL. An
//! image that did not load leaves the page's grey placeholder instead, and
//! the count falls short. The test fails (never skips) when Chromium is not
//! installed, and says how to install it.
//!
//! `REPROFILE_WRITE_SCREENSHOT=1` also writes the top of the screenshot to
//! `docs/review-demo.png` (the README's picture).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reprofile::core::plan::Action;
use reprofile::review::{reviews, Picture};
use reprofile::store::planfile::{self, PlanDocument};

use crate::world::{stderr, World};

/// How long Chromium may take to open the page and write the screenshot.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// The browser window; tall enough for the whole review of the demo world.
const WINDOW: (u32, u32) = (1200, 5000);
/// How much of the screenshot the README shows.
const README_HEIGHT: u32 = 2000;

/// Distinct, saturated colours that the page itself never uses.
const COLOURS: [[u8; 3]; 14] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [128, 0, 0],
    [0, 0, 128],
    [255, 225, 25],
    [0, 128, 128],
    [170, 110, 40],
    [128, 128, 0],
];

/// A solid-colour PNG.
fn solid_png(colour: [u8; 3]) -> Vec<u8> {
    let side = 16;
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&colour.repeat((side * side) as usize))
        .unwrap();
    writer.finish().unwrap();
    bytes
}

/// A loopback HTTP server of PNG files by path; it records every request.
struct ImageServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl ImageServer {
    fn start(images: BTreeMap<String, Vec<u8>>) -> ImageServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = serve(stream, &images, &log);
                }
            }
        });
        ImageServer {
            port,
            requests,
            stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    stream: TcpStream,
    images: &BTreeMap<String, Vec<u8>>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    log.lock().unwrap().push(path.clone());
    let mut stream = stream;
    match images.get(&path) {
        Some(png) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                png.len()
            )?;
            stream.write_all(png)?;
        }
        None => write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    stream.flush()
}

/// The distinct avatar URLs of the plan, in review order.
fn avatar_urls(doc: &PlanDocument) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for review in reviews(&doc.plan) {
        for pair in review.avatars() {
            for picture in [pair.before, pair.after] {
                if let Picture::Url(url) = picture {
                    if !urls.contains(&url) {
                        urls.push(url);
                    }
                }
            }
        }
    }
    urls
}

/// The plan with each avatar URL replaced, in the actions and in the kind:0
/// contents before and after.
fn rewrite_avatars(doc: &mut PlanDocument, new_url: &BTreeMap<String, String>) {
    let json = |url: &str| serde_json::to_string(url).unwrap();
    for action in &mut doc.plan.actions {
        match action {
            Action::BackfillAvatar(b) => {
                if let Some(new) = new_url.get(&b.avatar_url) {
                    b.avatar_url = new.clone();
                }
            }
            Action::RepublishProfile(r) => {
                if let Some(new) = new_url.get(&r.picture) {
                    r.picture = new.clone();
                }
                for (old, new) in new_url {
                    r.after.content = r.after.content.replace(&json(old), &json(new));
                    if let Some(before) = &mut r.before {
                        before.content = before.content.replace(&json(old), &json(new));
                    }
                }
            }
        }
    }
}

/// Chromium: `REPROFILE_CHROMIUM`, else `chromium` on PATH. A missing
/// browser fails the test with the command that installs it.
fn chromium() -> PathBuf {
    let found = match std::env::var_os("REPROFILE_CHROMIUM") {
        Some(path) => Some(PathBuf::from(path)).filter(|path| path.is_file()),
        None => std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("chromium"))
            .find(|path| path.is_file()),
    };
    found.unwrap_or_else(|| {
        panic!(
            "headless Chromium is not installed (no `chromium` on PATH, or REPROFILE_CHROMIUM \
             is not a file), and the browser test of the HTML review needs it: install it with \
             `apt-get install -y chromium` (or run .ci/setup)"
        )
    })
}

/// Runs headless Chromium on `page` and returns the screenshot (PNG file).
fn screenshot(chromium: &Path, page: &Path, dir: &Path) -> PathBuf {
    let shot = dir.join("screenshot.png");
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            // The page's console (a Content-Security-Policy violation, an
            // image that failed) goes to stderr.
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Chromium starts");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    let stderr_pipe = child.stderr.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stderr_pipe {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        let _ = done.send((child.wait(), text));
    });
    let (status, text) = match finished.recv_timeout(BROWSER_TIMEOUT) {
        Ok(result) => result,
        Err(_) => {
            // SAFETY: pid is our own child, which has not been reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("Chromium did not write its screenshot within {BROWSER_TIMEOUT:?}");
        }
    };
    let status = status.expect("Chromium ran");
    assert!(
        status.success() && shot.exists(),
        "Chromium failed ({status}):\n{text}"
    );
    // Nothing the policy blocked (the style is admitted by its hash, the
    // images by their schemes), no image that failed: a silent console.
    let console: Vec<&str> = text.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "the page's console: {console:#?}");
    shot
}

/// The screenshot's pixels as RGB rows.
fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    assert!(
        info.bit_depth == png::BitDepth::Eight && channels >= 3,
        "{info:?}"
    );
    let rgb: Vec<u8> = buffer[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|px| [px[0], px[1], px[2]])
        .collect();
    (info.width, info.height, rgb)
}

fn close(a: &[u8], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_draws_the_before_and_after_avatars_of_the_demo_review() {
    let chromium = chromium();
    let world = World::start().await;
    let planned = world.cli(&["plan"]).await;
    // The fixture world has a relay that is down on purpose: exit 1.
    crate::world::assert_incomplete_for_the_down_relay(&planned);
    let mut doc = planfile::read(&world.plan_files().pop().unwrap()).unwrap();

    // Each avatar URL gets its colour: the first as an inline data: URL, the
    // others served from loopback.
    let urls = avatar_urls(&doc);
    assert!(urls.len() >= 6 && urls.len() <= COLOURS.len(), "{urls:?}");
    let mut images = BTreeMap::new();
    let mut colour_of: BTreeMap<String, [u8; 3]> = BTreeMap::new();
    for (i, _) in urls.iter().enumerate().skip(1) {
        images.insert(format!("/avatar-{i}.png"), solid_png(COLOURS[i]));
    }
    let server = ImageServer::start(images);
    let mut new_url = BTreeMap::new();
    for (i, url) in urls.iter().enumerate() {
        let new = if i == 0 {
            format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(solid_png(COLOURS[0]))
            )
        } else {
            server.url(&format!("/avatar-{i}.png"))
        };
        colour_of.insert(new.clone(), COLOURS[i]);
        new_url.insert(url.clone(), new);
    }
    rewrite_avatars(&mut doc, &new_url);
    let plan_path = world.dir.path().join("review-plan.json");
    planfile::write(&doc, &world.plans_dir(), Some(&plan_path), String::new).unwrap();

    let page = world.dir.path().join("review.html");
    let shown = world
        .cli(&["show", plan_path.to_str().unwrap(), "--html"])
        .await;
    assert!(shown.status.success(), "{}", stderr(&shown));
    std::fs::write(&page, &shown.stdout).unwrap();
    let html = String::from_utf8(shown.stdout).unwrap();

    let dir = world.dir.path().to_path_buf();
    let page_for_browser = page.clone();
    let shot = tokio::task::spawn_blocking(move || screenshot(&chromium, &page_for_browser, &dir))
        .await
        .unwrap();
    let (width, height, rgb) = decode(&shot);
    assert_eq!((width, height), WINDOW);

    // Every served avatar was asked for.
    let requests = server.requests.lock().unwrap().clone();
    for i in 1..urls.len() {
        let path = format!("/avatar-{i}.png");
        assert!(
            requests.contains(&path),
            "{path} not requested: {requests:?}"
        );
    }

    // Each colour covers as many 96×96 images (less their 1px border and
    // rounded corners) as the page has <img> elements of its URL.
    let inner = 94 * 94;
    for (url, colour) in &colour_of {
        let images = html.matches(&format!("<img src=\"{url}\"")).count();
        assert!(images >= 1, "{url} is not an image of the page");
        let drawn = rgb.chunks(3).filter(|px| close(px, *colour)).count();
        assert!(
            drawn >= images * inner * 95 / 100 && drawn <= images * 96 * 96,
            "{url} ({colour:?}): {images} images on the page, but {drawn} pixels of its colour \
             in the screenshot (expected about {})",
            images * inner
        );
    }
    // The page's background and placeholders are none of the test colours.
    let background = &rgb[..3];
    assert!(COLOURS.iter().all(|c| !close(background, *c)));

    if std::env::var_os("REPROFILE_WRITE_SCREENSHOT").is_some() {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/review-demo.png");
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let top = &rgb[..(width * README_HEIGHT * 3) as usize];
        let mut encoder = png::Encoder::new(
            std::io::BufWriter::new(std::fs::File::create(&out).unwrap()),
            width,
            README_HEIGHT,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::High);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(top).unwrap();
        writer.finish().unwrap();
    }
}
