//! Where and what each device is (features `geoip` and `devices`), on every
//! enabled backend: sessions record country and city from a tiny `.mmdb`
//! built here (nothing is downloaded) and a device label from the user
//! agent, at creation and login; `sessions_of` shows them; a loaded
//! session whose client moves to another network or country is reported
//! (`Session::client_change`, `EventKind::ClientChanged`); none of it is
//! readable in the table; a missing or damaged `.mmdb` fails at start-up.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::{contains, table_bytes, Harness};
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::Serialize;
use stored_session::{
    ClientChange, Config, CookieAction, Error, Event, EventKind, GeoIp, IpTracking, Key, Keyring,
    MetadataPolicy, Session, SessionId, SessionStore,
};

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

#[derive(Serialize)]
struct Record {
    country: Country,
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<City>,
}

#[derive(Serialize)]
struct Country {
    iso_code: &'static str,
    names: Names,
}

#[derive(Serialize)]
struct City {
    names: Names,
}

#[derive(Serialize)]
struct Names {
    en: &'static str,
}

/// The networks of the test database: (network, country code, country,
/// city).
const NETWORKS: &[(&str, &str, &str, Option<&str>)] = &[
    ("::81.2.69.0/120", "GB", "United Kingdom", Some("London")),
    (
        "::81.2.70.0/120",
        "GB",
        "United Kingdom",
        Some("Manchester"),
    ),
    ("::89.160.20.0/120", "SE", "Sweden", Some("Linköping")),
    ("::175.16.199.0/120", "CN", "China", None),
    ("2001:db8:1::/48", "DE", "Germany", Some("Berlin")),
    ("2001:db8:2::/48", "DE", "Germany", Some("Hamburg")),
];

/// In the database, but with a record that is not a City record: its
/// lookups fail after the database opened (the probes never touch it).
const BROKEN_NETWORK: &str = "::198.51.100.0/120";

/// A tiny City database (IPv6 tree, IPv4 under `::/96`, as MaxMind's and
/// DB-IP's are), as `.mmdb` bytes.
fn test_mmdb() -> Vec<u8> {
    let mut db = maxminddb_writer::Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = "Test-City".into();
    db.metadata.binary_format_major_version = 2;
    db.metadata.languages = vec!["en".into()];
    for (network, code, country, city) in NETWORKS {
        let record = Record {
            country: Country {
                iso_code: code,
                names: Names { en: country },
            },
            city: city.map(|c| City {
                names: Names { en: c },
            }),
        };
        let data = db.insert_value(record).unwrap();
        db.insert_node(network.parse::<IpAddrWithMask>().unwrap(), data);
    }
    let broken = db.insert_value(42u32).unwrap();
    db.insert_node(BROKEN_NETWORK.parse::<IpAddrWithMask>().unwrap(), broken);
    db.write_to(Vec::new()).unwrap()
}

/// The test database written to a file of its own; removed on drop.
struct MmdbFile(PathBuf);

impl MmdbFile {
    fn new(bytes: &[u8]) -> MmdbFile {
        let dir = std::env::temp_dir().join("stored-session-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let name = SessionId::generate().stored_id().to_string();
        let path = dir.join(format!("geoip-{}.mmdb", &name[3..19]));
        std::fs::write(&path, bytes).unwrap();
        MmdbFile(path)
    }
}

impl Drop for MmdbFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn geoip() -> GeoIp {
    GeoIp::from_bytes(test_mmdb()).unwrap()
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

/// A store with the test database and device labels, recording `ip` as
/// the policy says (and never the user agent).
fn store(h: &Harness, ip: IpTracking) -> SessionStore {
    let policy = MetadataPolicy {
        ip,
        user_agent: false,
    };
    let config = h
        .config()
        .metadata(policy)
        .geoip(Some(geoip()))
        .devices(true);
    h.store_with(h.builder().config(config))
}

/// Every event the store emits of `kind`.
fn collect(store: &SessionStore, kind: EventKind) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    store.subscribe(move |e| {
        if e.kind == kind {
            sink.lock().unwrap().push(e.clone());
        }
    });
    seen
}

/// A signed-in session of `user`, created from `client_ip` with `ua`; its id.
fn sign_in(store: &SessionStore, user: &str, client_ip: &str, ua: &str) -> SessionId {
    let mut s = store.load(None).unwrap();
    s.set_client(ip(client_ip), Some(ua));
    s.set_user(user);
    s.renew();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id,
        other => panic!("{other:?}"),
    }
}

/// One request of the session `id` from `client_ip`: what it saw.
fn request(store: &SessionStore, id: &SessionId, client_ip: &str) -> (Session, CookieAction) {
    let mut s = store.load(Some(id.as_cookie_value())).unwrap();
    assert!(!s.is_new(), "the session is still there");
    s.set_client(ip(client_ip), Some(FIREFOX_LINUX));
    let action = store.save(&mut s).unwrap();
    (s, action)
}

fn city(s: &Session) -> Option<String> {
    s.location().and_then(|l| l.city)
}

fn creation_records_country_city_and_device(h: &Harness) {
    for policy in [IpTracking::Off, IpTracking::Truncated] {
        let store = store(h, policy);
        let id = sign_in(&store, "alice", "81.2.69.142", FIREFOX_LINUX);
        let s = store.load(Some(id.as_cookie_value())).unwrap();
        let location = s.location().expect("a location from the test database");
        assert_eq!(location.country_code, "GB");
        assert_eq!(location.country.as_deref(), Some("United Kingdom"));
        assert_eq!(location.city.as_deref(), Some("London"));
        assert_eq!(location.to_string(), "London, GB");
        assert_eq!(s.device(), Some("Firefox on Linux"));
        // The IP only as the policy allows; the user agent not at all.
        let expected_ip = (policy == IpTracking::Truncated).then_some("81.2.69.0");
        assert_eq!(s.meta("ip"), expected_ip);
        assert_eq!(s.meta("user_agent"), None);
        assert_eq!(s.client_change(), None);

        // An anonymous session with data is created the same way.
        let mut anon = store.load(None).unwrap();
        anon.set_client(ip("89.160.20.5"), Some(SAFARI_IPHONE));
        anon.insert("cart", &1).unwrap();
        let CookieAction::Set(anon_id, _) = store.save(&mut anon).unwrap() else {
            panic!("a new session")
        };
        let anon = store.load(Some(anon_id.as_cookie_value())).unwrap();
        assert_eq!(anon.location().unwrap().to_string(), "Linköping, SE");
        assert_eq!(anon.device(), Some("Safari on iPhone"));
    }
}

fn unknown_ip_gets_no_location(h: &Harness) {
    let store = store(h, IpTracking::Off);
    // Not in the database; in it with a country but no city; in it with a
    // record that fails to decode (the request still succeeds).
    let unknown = sign_in(&store, "bob", "203.0.113.9", SAFARI_IPHONE);
    let no_city = sign_in(&store, "bob", "175.16.199.7", SAFARI_IPHONE);
    let broken = sign_in(&store, "bob", "198.51.100.7", SAFARI_IPHONE);
    let location = |id: &SessionId| store.load(Some(id.as_cookie_value())).unwrap().location();
    assert_eq!(location(&unknown), None);
    let cn = location(&no_city).unwrap();
    assert_eq!((cn.country_code.as_str(), cn.city.as_deref()), ("CN", None));
    assert_eq!(cn.to_string(), "CN");
    assert_eq!(location(&broken), None);
    // The device is recorded whatever the address.
    let s = store.load(Some(unknown.as_cookie_value())).unwrap();
    assert_eq!(s.device(), Some("Safari on iPhone"));
    assert_eq!(geoip().locate("203.0.113.9".parse().unwrap()), None);
    assert_eq!(geoip().locate("2001:db8:3::1".parse().unwrap()), None);
}

fn sessions_of_shows_device_and_location(h: &Harness) {
    let store = store(h, IpTracking::Off);
    sign_in(&store, "carol", "81.2.69.142", FIREFOX_LINUX);
    let phone = sign_in(&store, "carol", "2001:db8:1::77", SAFARI_IPHONE);
    sign_in(&store, "carol", "203.0.113.9", "curl/8.5.0");
    let current = store.load(Some(phone.as_cookie_value())).unwrap();
    let page = store
        .sessions_of("carol", Some(&current), Default::default())
        .unwrap();
    let shown: Vec<_> = page
        .sessions
        .iter()
        .map(|i| {
            (
                i.device.clone(),
                i.location.as_ref().map(ToString::to_string),
                i.current,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (Some("HTTP Library".to_owned()), None, false),
            (
                Some("Safari on iPhone".to_owned()),
                Some("Berlin, DE".to_owned()),
                true
            ),
            (
                Some("Firefox on Linux".to_owned()),
                Some("London, GB".to_owned()),
                false
            ),
        ]
    );
    let berlin = page.sessions[1].location.clone().unwrap();
    assert_eq!(berlin.country.as_deref(), Some("Germany"));
    for info in &page.sessions {
        // Recorded by the store, not the application's own fields; no IP
        // and no user agent under this policy.
        assert!(info.fields.is_empty(), "{:?}", info.fields);
        assert_eq!(
            (info.ip.as_deref(), info.user_agent.as_deref()),
            (None, None)
        );
    }
}

fn client_change_on_country_and_network_changes(h: &Harness) {
    // Compared through the keyed network tag (IP not recorded) and
    // through the recorded, truncated IP.
    for policy in [IpTracking::Off, IpTracking::Truncated] {
        let store = store(h, policy);
        let events = collect(&store, EventKind::ClientChanged);
        let id = sign_in(&store, "dave", "81.2.69.142", FIREFOX_LINUX);

        // Same /24: nothing to report, nothing to write.
        let (s, action) = request(&store, &id, "81.2.69.7");
        assert_eq!(s.client_change(), None);
        assert_eq!(action, CookieAction::Keep);
        assert!(events.lock().unwrap().is_empty());

        // Another /24 in the same country: a network change, reported once;
        // the recorded location follows the client.
        let (s, _) = request(&store, &id, "81.2.70.5");
        assert_eq!(s.client_change(), None, "reported by the save");
        let (s, _) = request(&store, &id, "81.2.70.9");
        assert_eq!(s.client_change(), None);
        assert_eq!(city(&s).as_deref(), Some("Manchester"));
        {
            let seen = events.lock().unwrap();
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert_eq!(seen[0].client_change, Some(ClientChange::Network));
            assert_eq!(seen[0].sid, Some(id.stored_id()));
            assert_eq!(seen[0].name(), "session_client_changed.stored_session");
        }

        // Another country, seen by the handler before the save.
        let mut s = store.load(Some(id.as_cookie_value())).unwrap();
        s.set_client(ip("89.160.20.1"), Some(FIREFOX_LINUX));
        assert_eq!(s.client_change(), Some(ClientChange::Country));
        assert_eq!(s.location().unwrap().country_code, "SE");
        let _ = store.save(&mut s).unwrap();
        assert_eq!(
            events.lock().unwrap().last().unwrap().client_change,
            Some(ClientChange::Country)
        );

        // IPv6: another country; then the same /48; then another /48.
        let (_, _) = request(&store, &id, "2001:db8:1::5");
        let (s, action) = request(&store, &id, "2001:db8:1:ffff::1");
        assert_eq!(action, CookieAction::Keep);
        assert_eq!(city(&s).as_deref(), Some("Berlin"));
        let (_, _) = request(&store, &id, "2001:db8:2::1");
        let changes: Vec<_> = events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.client_change.unwrap())
            .collect();
        assert_eq!(
            changes,
            [
                ClientChange::Network,
                ClientChange::Country,
                ClientChange::Country,
                ClientChange::Network
            ]
        );

        // Into an address the database does not place: a network change,
        // the location now unknown; and back to a known country: no
        // country change either (one side unknown).
        let (_, _) = request(&store, &id, "203.0.113.9");
        let (s, _) = request(&store, &id, "81.2.69.1");
        assert_eq!(city(&s).as_deref(), Some("London"));
        let seen = events.lock().unwrap();
        assert_eq!(seen.len(), 6);
        assert!(seen[4..]
            .iter()
            .all(|e| e.client_change == Some(ClientChange::Network)));
    }
}

fn a_second_set_client_replaces_the_first(h: &Harness) {
    // An application behind a proxy reports the real client after the
    // adapter reported the proxy: only the real client counts.
    let store = store(h, IpTracking::Off);
    let events = collect(&store, EventKind::ClientChanged);
    let id = sign_in(&store, "erin", "81.2.69.142", FIREFOX_LINUX);
    let mut s = store.load(Some(id.as_cookie_value())).unwrap();
    s.set_client(ip("89.160.20.1"), Some(FIREFOX_LINUX));
    assert_eq!(s.client_change(), Some(ClientChange::Country));
    s.set_client(ip("81.2.69.200"), Some(FIREFOX_LINUX));
    assert_eq!(s.client_change(), None);
    assert_eq!(city(&s).as_deref(), Some("London"));
    let _ = store.save(&mut s).unwrap();
    assert!(events.lock().unwrap().is_empty());
    let (s, _) = request(&store, &id, "81.2.69.3");
    assert_eq!(s.client_change(), None);
}

fn login_records_again(h: &Harness) {
    // Created anonymously in London on an iPhone; signs in from Sweden on
    // Firefox: the login records the new place and device.
    let store = store(h, IpTracking::Off);
    let mut s = store.load(None).unwrap();
    s.set_client(ip("81.2.69.142"), Some(SAFARI_IPHONE));
    s.insert("cart", &1).unwrap();
    let CookieAction::Set(id, _) = store.save(&mut s).unwrap() else {
        panic!("a new session")
    };
    let mut s = store.load(Some(id.as_cookie_value())).unwrap();
    s.set_client(ip("81.2.69.150"), Some(FIREFOX_LINUX));
    assert_eq!(s.device(), Some("Safari on iPhone"), "not yet: no login");
    s.set_user("frank");
    s.renew();
    let CookieAction::Set(id, _) = store.save(&mut s).unwrap() else {
        panic!("renewed")
    };
    let s = store.load(Some(id.as_cookie_value())).unwrap();
    assert_eq!(s.device(), Some("Firefox on Linux"));
    assert_eq!(city(&s).as_deref(), Some("London"));
}

fn network_tags_survive_a_key_rotation(h: &Harness) {
    // The tag is keyed: after a rotation the old key still recognises the
    // network, and the tag is made again under the new key, so the old key
    // can go without every session reporting a change.
    let config = || h.config().geoip(Some(geoip())).devices(true);
    let old = h.keyring.current().clone();
    let new = Key::generate();
    let before = h.store_with(SessionStore::builder(Keyring::new(old.clone())).config(config()));
    let id = sign_in(&before, "kate", "81.2.69.142", FIREFOX_LINUX);

    let rotated = Keyring::new(new.clone()).with_previous(old).unwrap();
    let during = h.store_with(SessionStore::builder(rotated).config(config()));
    let events = collect(&during, EventKind::ClientChanged);
    let version = |store: &SessionStore| {
        common::row(store.database(), &id.stored_id())
            .unwrap()
            .version
    };
    let v = version(&during);
    let (s, _) = request(&during, &id, "81.2.69.7");
    assert_eq!(s.client_change(), None);
    assert!(events.lock().unwrap().is_empty());
    assert_eq!(
        version(&during),
        v + 1,
        "the tag was made again (and the envelope re-sealed)"
    );

    let after = h.store_with(SessionStore::builder(Keyring::new(new)).config(config()));
    let events = collect(&after, EventKind::ClientChanged);
    let (s, action) = request(&after, &id, "81.2.69.8");
    assert_eq!(s.client_change(), None);
    assert_eq!(action, CookieAction::Keep);
    assert!(events.lock().unwrap().is_empty());
    let (s, _) = request(&after, &id, "81.2.70.8");
    assert_eq!(s.client_change(), None);
    assert_eq!(events.lock().unwrap().len(), 1);
}

fn sessions_from_before_are_filled_in(h: &Harness) {
    // Sessions created before the database and device labels were
    // configured get them on their next request, without a change report.
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let plain = h.store_with(h.builder());
    let id = sign_in(&plain, "liam", "81.2.69.142", FIREFOX_LINUX);
    assert_eq!(
        plain.load(Some(id.as_cookie_value())).unwrap().location(),
        None
    );

    let store = store(h, IpTracking::Off);
    let events = collect(&store, EventKind::ClientChanged);
    let (s, action) = request(&store, &id, "81.2.69.142");
    assert_eq!(s.client_change(), None);
    assert_eq!(action, CookieAction::Keep, "filled in by a data write");
    let s = store.load(Some(id.as_cookie_value())).unwrap();
    assert_eq!(city(&s).as_deref(), Some("London"));
    assert_eq!(s.device(), Some("Firefox on Linux"));
    assert!(events.lock().unwrap().is_empty());
    let _ = request(&store, &id, "81.2.70.1");
    assert_eq!(events.lock().unwrap().len(), 1);
}

fn without_geoip_the_recorded_ip_is_compared(h: &Harness) {
    // No database, no device labels: the policy's recorded IP is enough
    // to report a change of network. (No database in the config: the
    // environment variable is read, so not while another test sets it.)
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let policy = MetadataPolicy {
        ip: IpTracking::Truncated,
        user_agent: false,
    };
    let store = h.store_with(h.builder().config(h.config().metadata(policy)));
    let events = collect(&store, EventKind::ClientChanged);
    let id = sign_in(&store, "gina", "81.2.69.142", FIREFOX_LINUX);
    let (s, _) = request(&store, &id, "81.2.69.7");
    assert_eq!(s.location(), None);
    assert_eq!(s.device(), None);
    let (_, _) = request(&store, &id, "89.160.20.1");
    let seen = events.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].client_change, Some(ClientChange::Network));

    // And with the default policy and nothing else, nothing is compared.
    let plain = h.store_with(h.builder());
    let events = collect(&plain, EventKind::ClientChanged);
    let id = sign_in(&plain, "gina", "81.2.69.142", FIREFOX_LINUX);
    let (s, _) = request(&plain, &id, "89.160.20.1");
    assert_eq!(s.client_change(), None);
    assert!(events.lock().unwrap().is_empty());
    assert!(s.meta("client.net").is_none());
}

fn nothing_readable_in_the_table(h: &Harness) {
    let store = store(h, IpTracking::Off);
    let id = sign_in(&store, "hank", "81.2.69.142", FIREFOX_LINUX);
    let _ = request(&store, &id, "89.160.20.77");
    sign_in(&store, "hank", "2001:db8:1::77", SAFARI_IPHONE);
    let all: Vec<u8> = table_bytes(store.database());
    let needles: &[&[u8]] = &[
        b"London",
        b"United Kingdom",
        "Linköping".as_bytes(),
        b"Sweden",
        b"Berlin",
        b"Germany",
        b"\xa2GB",
        b"\xa2SE",
        b"\xa2DE",
        b"Firefox",
        b"Linux",
        b"Safari",
        b"iPhone",
        b"Mozilla",
        b"81.2.69",
        b"89.160.20",
        b"2001:db8",
        &[81, 2, 69],
        &[89, 160, 20],
        &[0x20, 0x01, 0x0d, 0xb8],
        b"client.",
        b"country",
        b"hank",
    ];
    for needle in needles {
        assert!(
            !contains(&all, needle),
            "{:?} is readable in the table",
            String::from_utf8_lossy(needle)
        );
    }
}

/// The environment variable is the process's: one test at a time sets it.
static ENV: Mutex<()> = Mutex::new(());

fn missing_or_damaged_mmdb_fails_at_open(h: &Harness) {
    let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let missing = std::env::temp_dir().join("stored-session-tests/no-such-file.mmdb");
    let good = test_mmdb();
    let garbage = MmdbFile::new(b"this is not a MaxMind database");
    let truncated = MmdbFile::new(&good[..good.len() / 2]);
    let empty = MmdbFile::new(b"");
    let good_file = MmdbFile::new(&good);

    // Through the config: the error comes from `GeoIp::open`.
    let err = GeoIp::open(&missing).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(
        text.contains("no-such-file.mmdb") && text.contains("cannot be read"),
        "{text}"
    );
    for bad in [&garbage, &truncated, &empty] {
        let err = GeoIp::open(&bad.0).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(text.contains("not a MaxMind DB"), "{text}");
        assert!(text.contains(&bad.0.display().to_string()), "{text}");
    }
    let opened = GeoIp::open(&good_file.0).unwrap();
    assert_eq!(opened.database_type(), "Test-City");
    assert_eq!(opened.path(), Some(good_file.0.as_path()));

    // Through STORED_SESSION_GEOIP: the error comes from `open`.
    struct Unset;
    impl Drop for Unset {
        fn drop(&mut self) {
            std::env::remove_var(GeoIp::ENV);
        }
    }
    let _unset = Unset;
    let open = || h.builder().open_migrated(&h.url);
    std::env::set_var(GeoIp::ENV, &missing);
    let err = open().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("STORED_SESSION_GEOIP: geoip database /tmp"),
        "{err}"
    );
    std::env::set_var(GeoIp::ENV, &garbage.0);
    assert!(matches!(open(), Err(Error::Config(_))));
    // A config that names a database wins over the variable.
    let config = h.config().geoip(Some(geoip()));
    assert!(h.builder().config(config).open_migrated(&h.url).is_ok());
    // The variable naming a good file places sessions.
    std::env::set_var(GeoIp::ENV, &good_file.0);
    let store = open();
    std::env::remove_var(GeoIp::ENV);
    let store = store.unwrap();
    assert!(store.config().geoip.is_some());
    let id = sign_in(&store, "ivy", "81.2.69.142", FIREFOX_LINUX);
    let s = store.load(Some(id.as_cookie_value())).unwrap();
    assert_eq!(city(&s).as_deref(), Some("London"));
    // Unset or empty: no database.
    std::env::set_var(GeoIp::ENV, "");
    let store = open();
    std::env::remove_var(GeoIp::ENV);
    assert!(store.unwrap().config().geoip.is_none());
}

#[cfg(feature = "adapters")]
fn adapters_pass_the_client_on(h: &Harness) {
    // With the default metadata policy the adapters still hand the store
    // the IP and the user agent when it locates and labels them.
    use stored_session::adapters::Sessions;
    let store = store(h, IpTracking::Off);
    let sessions = Sessions::new(store.clone());
    let mut lazy = sessions.begin(Vec::<&[u8]>::new());
    lazy.set_client(ip("81.2.69.142"), Some(FIREFOX_LINUX));
    lazy.set_user("jack");
    lazy.renew();
    let set = lazy.finish().unwrap().expect("a cookie");
    let cookie = format!("{}={}", set.as_cookie().name(), set.as_cookie().value());
    let mut lazy = sessions.begin(Some(cookie.as_str()));
    lazy.set_client(ip("89.160.20.1"), Some(FIREFOX_LINUX));
    assert_eq!(lazy.client_change().unwrap(), Some(ClientChange::Country));
    assert_eq!(lazy.device().unwrap(), Some("Firefox on Linux"));
    assert_eq!(lazy.location().unwrap().unwrap().country_code, "SE");
    lazy.finish().unwrap();
    let page = store.sessions_of("jack", None, Default::default()).unwrap();
    assert_eq!(
        page.sessions[0].location.as_ref().unwrap().to_string(),
        "Linköping, SE"
    );
}

#[cfg(not(feature = "adapters"))]
fn adapters_pass_the_client_on(_: &Harness) {}

#[cfg(all(feature = "admin", feature = "http"))]
fn the_admin_page_shows_them(h: &Harness) {
    use stored_session::admin::{self, Admin};
    let store = store(h, IpTracking::Off);
    sign_in(&store, "mia", "81.2.69.142", FIREFOX_LINUX);
    sign_in(&store, "mia", "203.0.113.9", SAFARI_IPHONE);
    let admin = Admin::new(store);
    let request = http::Request::builder()
        .uri("/admin/?user=mia")
        .body(Vec::<u8>::new())
        .unwrap();
    let response: http::Response<String> = admin::http::handle(&admin, &request);
    assert_eq!(response.status(), 200);
    let page = response.body();
    assert!(page.contains("<th>Location</th><th>Device</th>"), "{page}");
    assert!(
        page.contains("<td class=\"location\">London, GB</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"device\">Firefox on Linux</td>"),
        "{page}"
    );
    assert!(page.contains("<td class=\"location\">—</td>"), "{page}");
    assert!(
        page.contains("<td class=\"device\">Safari on iPhone</td>"),
        "{page}"
    );
}

#[cfg(not(all(feature = "admin", feature = "http")))]
fn the_admin_page_shows_them(_: &Harness) {}

#[cfg(feature = "cli")]
fn the_cli_lists_them(h: &Harness) {
    let key = Key::generate();
    let keys = key.to_base64().to_string();
    // On the system clock, as the command is.
    let config = Config::default().geoip(Some(geoip())).devices(true);
    let store = SessionStore::builder(Keyring::new(key))
        .config(config)
        .open_migrated(&h.url)
        .unwrap();
    sign_in(&store, "nora", "81.2.69.142", FIREFOX_LINUX);
    let list = |json: bool| {
        let mut args = vec!["list", "--user", "nora"];
        if json {
            args.push("--json");
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stored-session"))
            .args(args)
            .env("DATABASE_URL", &h.url)
            .env("STORED_SESSION_KEYS", &keys)
            .env_remove(GeoIp::ENV)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&list(true)).unwrap();
    assert_eq!(json[0]["device"], "Firefox on Linux");
    assert_eq!(json[0]["location"]["country_code"], "GB");
    assert_eq!(json[0]["location"]["country"], "United Kingdom");
    assert_eq!(json[0]["location"]["city"], "London");
    let text = list(false);
    assert!(
        text.contains("  device Firefox on Linux  location London, GB\n"),
        "{text}"
    );
}

#[cfg(not(feature = "cli"))]
fn the_cli_lists_them(_: &Harness) {}

backend_suite!(
    creation_records_country_city_and_device,
    unknown_ip_gets_no_location,
    sessions_of_shows_device_and_location,
    client_change_on_country_and_network_changes,
    a_second_set_client_replaces_the_first,
    login_records_again,
    network_tags_survive_a_key_rotation,
    sessions_from_before_are_filled_in,
    without_geoip_the_recorded_ip_is_compared,
    nothing_readable_in_the_table,
    missing_or_damaged_mmdb_fails_at_open,
    adapters_pass_the_client_on,
    the_admin_page_shows_them,
    the_cli_lists_them,
);

#[test]
fn the_config_shows_the_database_not_its_contents() {
    let text = format!("{:?}", Config::default().geoip(Some(geoip())));
    assert!(text.contains("Test-City"), "{text}");
    assert!(!text.contains("London"), "{text}");
}
