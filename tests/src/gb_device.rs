//! A GB28181 device simulator: a SIP user agent over UDP that registers (answering the
//! digest challenge), keeps alive, answers the catalog query with one channel, and answers
//! INVITE by streaming a clip as PS over RTP over TCP ([`crate::gb_camera`]) to the port and
//! SSRC the INVITE names; BYE stops the media. `drop_media` cuts the media connection without
//! any SIP, as a camera losing its uplink would.

use crate::gb_camera::{Camera, Fault};
use estuary_protocols::gb28181::sip::{self, SipMessage};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running device.
pub struct Device {
    socket: Arc<UdpSocket>,
    server: std::net::SocketAddr,
    id: String,
    realm: String,
    password: String,
    stop: Arc<AtomicBool>,
    camera: Arc<Mutex<Option<Camera>>>,
    /// INVITEs answered.
    pub invites: Arc<AtomicU32>,
    /// Channel ids of the INVITEs answered, in order.
    pub invited: Arc<Mutex<Vec<String>>>,
    /// SSRCs of the INVITEs answered, in order.
    pub ssrcs: Arc<Mutex<Vec<u32>>>,
    answers_catalog: Arc<AtomicBool>,
    sends_media: Arc<AtomicBool>,
    reply: Arc<Mutex<Option<SipMessage>>>,
    cseq: AtomicU32,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn call_id() -> String {
    format!("{}@device", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0))
}

impl Device {
    /// A device `id` with one channel `channel`, talking to the SIP server on `sip_port`.
    pub fn new(sip_port: u16, id: &str, password: &str, channel: &str, clip: PathBuf) -> Device {
        Device::new_with(sip_port, id, password, channel, clip, false)
    }

    /// Like [`Device::new`]; with `g711` its camera sends G.711 A-law audio.
    pub fn new_with(sip_port: u16, id: &str, password: &str, channel: &str, clip: PathBuf, g711: bool) -> Device {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("device socket"));
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let server = ([127, 0, 0, 1], sip_port).into();
        let stop = Arc::new(AtomicBool::new(false));
        let camera = Arc::new(Mutex::new(None));
        let invites = Arc::new(AtomicU32::new(0));
        let mut device = Device {
            socket,
            server,
            id: id.into(),
            realm: "3402000000".into(),
            password: password.into(),
            stop,
            camera,
            invites,
            invited: Arc::default(),
            ssrcs: Arc::default(),
            answers_catalog: Arc::new(AtomicBool::new(true)),
            sends_media: Arc::new(AtomicBool::new(true)),
            reply: Arc::new(Mutex::new(None)),
            cseq: AtomicU32::new(1),
            thread: None,
        };
        device.thread = Some(device.spawn(channel.to_string(), clip, g711));
        device
    }

    fn register_message(&self, expires: u32, authorization: Option<String>) -> SipMessage {
        let cseq = self.cseq.fetch_add(1, Ordering::SeqCst);
        let local = self.socket.local_addr().expect("address");
        let mut m = SipMessage::request("REGISTER", &format!("sip:34020000002000000001@{}", self.realm))
            .with("Via", format!("SIP/2.0/UDP {local};rport;branch=z9hG4bK{cseq}"))
            .with("From", format!("<sip:{}@{}>;tag=dev{cseq}", self.id, self.realm))
            .with("To", format!("<sip:{}@{}>", self.id, self.realm))
            .with("Call-ID", format!("reg-{}@device", self.id))
            .with("CSeq", format!("{cseq} REGISTER"))
            .with("Contact", format!("<sip:{}@{local}>", self.id))
            .with("Max-Forwards", "70")
            .with("Expires", expires.to_string());
        if let Some(a) = authorization {
            m = m.with("Authorization", a);
        }
        m
    }

    /// Registers (or, with `expires` 0, unregisters); returns the final status code. The
    /// background thread forwards REGISTER responses here.
    pub fn register(&self, expires: u32) -> u16 {
        let first = self.exchange(self.register_message(expires, None));
        match first {
            Some(response) if response.code() == Some(401) => {
                let challenge = response.header("WWW-Authenticate").unwrap_or_default().to_string();
                let nonce = sip::param(&challenge, "nonce").unwrap_or_default().to_string();
                let realm = sip::param(&challenge, "realm").unwrap_or(&self.realm).to_string();
                let uri = format!("sip:34020000002000000001@{}", self.realm);
                let digest = sip::digest_response(&self.id, &realm, &self.password, "REGISTER", &uri, &nonce);
                let authorization = format!(r#"Digest username="{}",realm="{realm}",nonce="{nonce}",uri="{uri}",response="{digest}",algorithm=MD5"#, self.id);
                self.exchange(self.register_message(expires, Some(authorization))).and_then(|r| r.code()).unwrap_or(0)
            }
            Some(response) => response.code().unwrap_or(0),
            None => 0,
        }
    }

    fn exchange(&self, message: SipMessage) -> Option<SipMessage> {
        *self.reply.lock().unwrap() = None;
        self.socket.send_to(&message.to_bytes(), self.server).ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(reply) = self.reply.lock().unwrap().take() {
                return Some(reply);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Stops the media connection (no SIP).
    pub fn drop_media(&self) {
        if let Some(camera) = self.camera.lock().unwrap().take() {
            let _ = camera.finish();
        }
    }

    /// From now on the catalog query is acknowledged but never answered, as devices made
    /// for SRS 5/6 do.
    pub fn ignore_catalog(&self) {
        self.answers_catalog.store(false, Ordering::SeqCst);
    }

    /// From now on INVITEs are answered 200 but no media is sent (the SSRC is recorded).
    pub fn withhold_media(&self) {
        self.sends_media.store(false, Ordering::SeqCst);
    }

    /// Sends raw bytes to the SIP server.
    pub fn send_raw(&self, data: &[u8]) {
        let _ = self.socket.send_to(data, self.server);
    }

    fn spawn(&self, channel: String, clip: PathBuf, g711: bool) -> std::thread::JoinHandle<()> {
        let (socket, server, id, realm) = (self.socket.clone(), self.server, self.id.clone(), self.realm.clone());
        let (stop, camera, invites, reply) = (self.stop.clone(), self.camera.clone(), self.invites.clone(), self.reply.clone());
        let (invited, answers_catalog) = (self.invited.clone(), self.answers_catalog.clone());
        let (ssrcs, sends_media) = (self.ssrcs.clone(), self.sends_media.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut last_keepalive = Instant::now();
            let mut sn = 1;
            while !stop.load(Ordering::SeqCst) {
                if last_keepalive.elapsed() > Duration::from_secs(1) {
                    last_keepalive = Instant::now();
                    sn += 1;
                    let body = format!("<?xml version=\"1.0\"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{id}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n");
                    let m = SipMessage::request("MESSAGE", &format!("sip:34020000002000000001@{realm}"))
                        .with("Via", format!("SIP/2.0/UDP {};branch=z9hG4bKka{sn}", socket.local_addr().unwrap()))
                        .with("From", format!("<sip:{id}@{realm}>;tag=ka{sn}"))
                        .with("To", format!("<sip:34020000002000000001@{realm}>"))
                        .with("Call-ID", format!("ka{sn}-{}", call_id()))
                        .with("CSeq", format!("{sn} MESSAGE"))
                        .with_body("Application/MANSCDP+xml", body);
                    let _ = socket.send_to(&m.to_bytes(), server);
                }
                let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
                let Ok(Some((message, _))) = SipMessage::parse(&buf[..n]) else { continue };
                match message.method() {
                    None => {
                        if message.cseq().is_some_and(|(_, m)| m == "REGISTER") {
                            *reply.lock().unwrap() = Some(message);
                        }
                    }
                    Some("MESSAGE") => {
                        let _ = socket.send_to(&SipMessage::response_to(&message, 200, "OK", Some("d1")).to_bytes(), from);
                        let body = String::from_utf8_lossy(&message.body).into_owned();
                        if sip::xml_field(&body, "CmdType") == Some("Catalog") && answers_catalog.load(Ordering::SeqCst) {
                            let query_sn = sip::xml_field(&body, "SN").unwrap_or("1").to_string();
                            let catalog = format!(
                                "<?xml version=\"1.0\"?>\r\n<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{query_sn}</SN>\r\n<DeviceID>{id}</DeviceID>\r\n<SumNum>1</SumNum>\r\n<DeviceList Num=\"1\">\r\n<Item>\r\n<DeviceID>{channel}</DeviceID>\r\n<Name>Gate</Name>\r\n<Status>ON</Status>\r\n</Item>\r\n</DeviceList>\r\n</Response>\r\n"
                            );
                            let m = SipMessage::request("MESSAGE", &format!("sip:34020000002000000001@{realm}"))
                                .with("Via", format!("SIP/2.0/UDP {};branch=z9hG4bKcat", socket.local_addr().unwrap()))
                                .with("From", format!("<sip:{id}@{realm}>;tag=cat"))
                                .with("To", format!("<sip:34020000002000000001@{realm}>"))
                                .with("Call-ID", format!("cat-{}", call_id()))
                                .with("CSeq", "20 MESSAGE")
                                .with_body("Application/MANSCDP+xml", catalog);
                            let _ = socket.send_to(&m.to_bytes(), server);
                        }
                    }
                    Some("INVITE") => {
                        let sdp = String::from_utf8_lossy(&message.body).into_owned();
                        let media = sdp.lines().find_map(|l| l.strip_prefix("m=video ")).unwrap_or_default().to_string();
                        let port = media.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
                        let udp = media.split_whitespace().nth(1) == Some("RTP/AVP");
                        let ssrc = sdp.lines().find_map(|l| l.strip_prefix("y=")).and_then(|s| s.trim().parse::<u32>().ok());
                        let (Some(port), Some(ssrc)) = (port, ssrc) else {
                            let _ = socket.send_to(&SipMessage::response_to(&message, 488, "Not Acceptable Here", Some("inv")).to_bytes(), from);
                            continue;
                        };
                        let answer = format!("v=0\r\no={channel} 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 9 TCP/RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\na=setup:active\r\ny={ssrc:010}\r\n");
                        let ok = SipMessage::response_to(&message, 200, "OK", Some("inv")).with("Contact", format!("<sip:{channel}@{}>", socket.local_addr().unwrap())).with_body("APPLICATION/SDP", answer);
                        let _ = socket.send_to(&ok.to_bytes(), from);
                        invites.fetch_add(1, Ordering::SeqCst);
                        let target = message.header("To").and_then(|to| to.split("sip:").nth(1)).and_then(|rest| rest.split('@').next()).unwrap_or_default().to_string();
                        invited.lock().unwrap().push(target);
                        ssrcs.lock().unwrap().push(ssrc);
                        if !sends_media.load(Ordering::SeqCst) {
                            continue;
                        }
                        // Media starts right away (the ACK follows; a real camera would wait
                        // for it, which only delays the first packet).
                        let previous = camera.lock().unwrap().replace(Camera::start_over(port, ssrc, &clip, 600.0, Fault::None, g711, udp));
                        if let Some(previous) = previous {
                            let _ = previous.finish();
                        }
                    }
                    Some("BYE") => {
                        let _ = socket.send_to(&SipMessage::response_to(&message, 200, "OK", None).to_bytes(), from);
                        if let Some(camera) = camera.lock().unwrap().take() {
                            let _ = camera.finish();
                        }
                    }
                    Some(_) => {}
                }
            }
            if let Some(camera) = camera.lock().unwrap().take() {
                let _ = camera.finish();
            }
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
