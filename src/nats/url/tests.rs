//! Lists of servers and the errors, from tables; no credential printed.

use super::{Auth, Server, UrlError, parse_servers};

fn server(host: &str, port: u16, auth: Auth) -> Server {
    Server {
        host: host.to_owned(),
        port,
        auth,
    }
}

fn user(user: &str, pass: &str) -> Auth {
    Auth::UserPass {
        user: user.to_owned(),
        pass: pass.to_owned(),
    }
}

#[test]
fn lists() {
    let token = |t: &str| Auth::Token(t.to_owned());
    let cases: Vec<(&str, Vec<Server>)> = vec![
        (
            "nats://localhost:4222",
            vec![server("localhost", 4222, Auth::None)],
        ),
        (
            "nats://localhost",
            vec![server("localhost", 4222, Auth::None)],
        ),
        (
            "localhost:4333",
            vec![server("localhost", 4333, Auth::None)],
        ),
        (
            "demo.nats.io",
            vec![server("demo.nats.io", 4222, Auth::None)],
        ),
        ("NATS://h:1", vec![server("h", 1, Auth::None)]),
        ("nats://h:65535/", vec![server("h", 65535, Auth::None)]),
        (
            "nats://127.0.0.1:4222",
            vec![server("127.0.0.1", 4222, Auth::None)],
        ),
        ("nats://[::1]:4223", vec![server("::1", 4223, Auth::None)]),
        ("[fe80::1]", vec![server("fe80::1", 4222, Auth::None)]),
        ("nats://a:b@h", vec![server("h", 4222, user("a", "b"))]),
        ("nats://a:@h", vec![server("h", 4222, user("a", ""))]),
        ("nats://a:b:c@h:5", vec![server("h", 5, user("a", "b:c"))]),
        (
            "nats://a:p@ss@h",
            vec![server("h", 4222, user("a", "p@ss"))],
        ),
        (
            "nats://u%40x:p%3A%2f%25@h",
            vec![server("h", 4222, user("u@x", "p:/%"))],
        ),
        ("nats://%C3%BC:x@h", vec![server("h", 4222, user("ü", "x"))]),
        ("nats://s3cr3t@h:7", vec![server("h", 7, token("s3cr3t"))]),
        ("tok@[::1]", vec![server("::1", 4222, token("tok"))]),
        ("  nats://h  ", vec![server("h", 4222, Auth::None)]),
        (
            "nats://a:1, nats://b:2 ,c,[::2]:4",
            vec![
                server("a", 1, Auth::None),
                server("b", 2, Auth::None),
                server("c", 4222, Auth::None),
                server("::2", 4, Auth::None),
            ],
        ),
    ];
    for (list, expected) in cases {
        assert_eq!(parse_servers(list), Ok(expected), "{list:?}");
    }
}

#[test]
fn errors() {
    let url = |u: &str| u.to_owned();
    let cases: Vec<(&str, UrlError, &str)> = vec![
        ("", UrlError::EmptyList, "no nats server url given"),
        (
            " , ",
            UrlError::EmptyEntry(1),
            "nats url list: entry 1 is empty",
        ),
        (
            "h,,k",
            UrlError::EmptyEntry(2),
            "nats url list: entry 2 is empty",
        ),
        (
            "h,",
            UrlError::EmptyEntry(2),
            "nats url list: entry 2 is empty",
        ),
        (
            "tls://u:pw@h:4222",
            UrlError::TlsNotSupported {
                url: url("tls://***@h:4222"),
            },
            "nats url 'tls://***@h:4222': TLS is not supported, use a plain nats:// url",
        ),
        (
            "ws://h",
            UrlError::UnsupportedScheme {
                url: url("ws://h"),
                scheme: url("ws"),
            },
            "nats url 'ws://h': unsupported scheme 'ws', use nats://",
        ),
        (
            "nats://",
            UrlError::EmptyHost {
                url: url("nats://"),
            },
            "nats url 'nats://': empty host",
        ),
        (
            "nats://u:pw@:4222",
            UrlError::EmptyHost {
                url: url("nats://***@:4222"),
            },
            "nats url 'nats://***@:4222': empty host",
        ),
        (
            "nats://h:x",
            UrlError::BadPort {
                url: url("nats://h:x"),
            },
            "nats url 'nats://h:x': bad port",
        ),
        (
            "nats://h:",
            UrlError::BadPort {
                url: url("nats://h:"),
            },
            "",
        ),
        (
            "nats://h:0",
            UrlError::BadPort {
                url: url("nats://h:0"),
            },
            "",
        ),
        (
            "nats://h:65536",
            UrlError::BadPort {
                url: url("nats://h:65536"),
            },
            "",
        ),
        (
            "nats://h:+1",
            UrlError::BadPort {
                url: url("nats://h:+1"),
            },
            "",
        ),
        (
            "nats://[::1]:x",
            UrlError::BadPort {
                url: url("nats://[::1]:x"),
            },
            "",
        ),
        (
            "nats://::1",
            UrlError::BadHost {
                url: url("nats://::1"),
            },
            "",
        ),
        (
            "nats://[::1",
            UrlError::BadHost {
                url: url("nats://[::1"),
            },
            "",
        ),
        (
            "nats://[nope]",
            UrlError::BadHost {
                url: url("nats://[nope]"),
            },
            "",
        ),
        (
            "nats://[::1]x",
            UrlError::BadHost {
                url: url("nats://[::1]x"),
            },
            "",
        ),
        (
            "nats://h st",
            UrlError::BadHost {
                url: url("nats://h st"),
            },
            "",
        ),
        (
            "nats://h:1/x",
            UrlError::Path {
                url: url("nats://h:1/x"),
            },
            "nats url 'nats://h:1/x': unexpected path",
        ),
        (
            "nats://h?x",
            UrlError::Path {
                url: url("nats://h?x"),
            },
            "",
        ),
        (
            "nats://u:p%zz@h",
            UrlError::BadUserinfo {
                url: url("nats://***@h"),
            },
            "nats url 'nats://***@h': bad user info (empty, or a bad %-escape)",
        ),
        (
            "nats://@h",
            UrlError::BadUserinfo {
                url: url("nats://***@h"),
            },
            "",
        ),
        (
            "nats://:pw@h",
            UrlError::BadUserinfo {
                url: url("nats://***@h"),
            },
            "",
        ),
        (
            "nats://u:%FF@h",
            UrlError::BadUserinfo {
                url: url("nats://***@h"),
            },
            "",
        ),
        ("tok%4@h", UrlError::BadUserinfo { url: url("***@h") }, ""),
    ];
    for (list, expected, message) in cases {
        let err = parse_servers(list).expect_err(list);
        assert_eq!(err, expected, "{list:?}");
        if !message.is_empty() {
            assert_eq!(err.to_string(), message, "{list:?}");
        }
    }
}

#[test]
fn credentials_are_never_printed() {
    let secret = "hunter2";
    for list in [
        "nats://me:hunter2@h:1",
        "nats://hunter2@h:1",
        "hunter2@h:1",
        "nats://me:hunter2@h:x",
        "tls://me:hunter2@h",
        "nats://me:hunter2%@h",
        "nats://me:hunter2@h/path",
        "nats://me:hunter2@",
        "nats://me:hunter2@[::1",
        "nats://a:1,nats://me:hunter2@h st",
    ] {
        match parse_servers(list) {
            Ok(servers) => {
                assert!(!format!("{servers:?}").contains(secret), "{list:?}");
                for server in servers {
                    assert!(!server.to_string().contains(secret), "{list:?}");
                    assert!(!server.address().contains(secret), "{list:?}");
                }
            }
            Err(e) => {
                assert!(!e.to_string().contains(secret), "{list:?}: {e}");
                assert!(!format!("{e:?}").contains(secret), "{list:?}: {e:?}");
            }
        }
    }
}

#[test]
fn addresses() {
    let cases = [
        (server("h", 4222, user("u", "p")), "h:4222"),
        (server("10.0.0.1", 1, Auth::None), "10.0.0.1:1"),
        (server("::1", 4222, Auth::Token("t".into())), "[::1]:4222"),
    ];
    for (server, address) in cases {
        assert_eq!(server.address(), address);
        assert_eq!(server.to_string(), address);
    }
}
