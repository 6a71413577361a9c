//! Failover: the broker addresses a client was given, which one it uses now,
//! and the move to the next when that one stops answering.
//!
//! Every part of the client (calls, the publisher, heartbeats, streams) asks
//! here which broker to use and reports here that it stopped answering, so
//! the move is made once for all of them; the heartbeat thread then
//! subscribes again there. Owns the list and the position in it; never
//! connects, never sends.

use super::{Error, Inner};
use crate::http::HttpError;
use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What [`Client::builder`](super::Client::builder) takes: one broker
/// address (`"host:port"`), or several, used in turn when the one in use
/// stops answering (see the [module docs](super#several-brokers)).
///
/// Implemented for a string (`&str`, `String`, `&String`, `Box<str>`,
/// `Cow<str>`) and for a list of strings (an array, a `Vec` or a slice).
///
/// ```no_run
/// use message_broker::client::Client;
/// let one = Client::builder("10.0.0.1:9999").listen_port(0).build()?;
/// let two = Client::builder(["10.0.0.1:9999", "10.0.0.2:9999"]).listen_port(0).build()?;
/// let from_config: Vec<String> = vec!["10.0.0.3:9999".into(), "10.0.0.4:9999".into()];
/// let three = Client::builder(&from_config).listen_port(0).build()?;
/// # Ok::<(), message_broker::client::Error>(())
/// ```
pub trait Brokers {
    /// The addresses, in the order they are tried.
    fn into_brokers(self) -> Vec<String>;
}

macro_rules! one_broker {
    ($($t:ty),+) => {$(
        impl Brokers for $t {
            fn into_brokers(self) -> Vec<String> {
                vec![self.into()]
            }
        }
    )+};
}
one_broker!(&str, String, &String, Box<str>, Cow<'_, str>);

fn owned<S: AsRef<str>>(list: impl IntoIterator<Item = S>) -> Vec<String> {
    list.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

impl<S: AsRef<str>, const N: usize> Brokers for [S; N] {
    fn into_brokers(self) -> Vec<String> {
        owned(self)
    }
}

impl<S: AsRef<str>, const N: usize> Brokers for &[S; N] {
    fn into_brokers(self) -> Vec<String> {
        owned(self)
    }
}

impl<S: AsRef<str>> Brokers for Vec<S> {
    fn into_brokers(self) -> Vec<String> {
        owned(self)
    }
}

impl<S: AsRef<str>> Brokers for &Vec<S> {
    fn into_brokers(self) -> Vec<String> {
        owned(self)
    }
}

impl<S: AsRef<str>> Brokers for &[S] {
    fn into_brokers(self) -> Vec<String> {
        owned(self)
    }
}

/// Where the client is in the list: the number of moves so far (which
/// tells one stay at a broker from a later one) and the address's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct At {
    pub(super) epoch: u64,
    pub(super) index: usize,
}

/// The addresses and the one in use, shared by the client's threads.
#[derive(Debug)]
pub(super) struct BrokerList {
    /// As given, never empty: resolved again for each new connection, so
    /// a broker that comes back at a new address is found.
    addrs: Vec<String>,
    /// Moves so far; the broker in use is `addrs[moves % len]`.
    moves: AtomicU64,
    /// Moves since a broker last answered: past one round every broker has
    /// failed, and further moves are logged at debug level only.
    failing: AtomicUsize,
}

impl BrokerList {
    /// The list, which the builder has checked is not empty.
    pub(super) fn new(addrs: Vec<String>) -> BrokerList {
        debug_assert!(!addrs.is_empty());
        BrokerList {
            addrs,
            moves: AtomicU64::new(0),
            failing: AtomicUsize::new(0),
        }
    }

    fn at(&self, epoch: u64) -> At {
        // The length is at least 1, and fits a u64.
        let index = epoch % self.addrs.len() as u64;
        At {
            epoch,
            index: usize::try_from(index).unwrap_or(0),
        }
    }

    /// The broker in use now.
    pub(super) fn current(&self) -> At {
        self.at(self.moves.load(Ordering::SeqCst))
    }

    /// The address at `index` (as [`At::index`] gives it).
    pub(super) fn addr(&self, index: usize) -> &str {
        self.addrs.get(index).map_or("", String::as_str)
    }

    /// Whether there is another broker to move to.
    pub(super) fn several(&self) -> bool {
        self.addrs.len() > 1
    }

    /// A broker answered: the list is not failing as a whole.
    pub(super) fn answered(&self) {
        if self.failing.load(Ordering::Relaxed) != 0 {
            self.failing.store(0, Ordering::Relaxed);
        }
    }

    /// The broker at `from` stopped answering (`why`): moves to the next
    /// address, round robin, and returns where the client is now. When
    /// another thread has already moved on from `from`, no second move: its
    /// choice stands. `None` with a single address: there is nowhere to go.
    pub(super) fn move_on(&self, from: At, why: &dyn fmt::Display) -> Option<At> {
        if !self.several() {
            return None;
        }
        let next = from.epoch.wrapping_add(1);
        match self
            .moves
            .compare_exchange(from.epoch, next, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                let to = self.at(next);
                let (old, new) = (self.addr(from.index), self.addr(to.index));
                if self.failing.fetch_add(1, Ordering::Relaxed) < self.addrs.len() {
                    crate::log::warning!(
                        "client: broker {old} stopped answering ({why}); moving to {new}"
                    );
                } else {
                    crate::log::debug!("client: no broker answers ({why}); trying {new}");
                }
                Some(to)
            }
            Err(now) => Some(self.at(now)),
        }
    }
}

/// An attempt at a broker that failed, and whether what it sent may have
/// reached that broker (then it is never sent to another one).
pub(super) struct Failed {
    pub(super) error: Error,
    pub(super) reached: bool,
}

impl Failed {
    /// Nothing reached the broker (connecting failed, say).
    pub(super) fn unsent(error: Error) -> Failed {
        Failed {
            error,
            reached: false,
        }
    }

    /// The broker may have taken what was sent.
    pub(super) fn reached(error: Error) -> Failed {
        Failed {
            error,
            reached: true,
        }
    }
}

/// Whether `e` says the broker stopped answering: it could not be
/// reached or resolved, the connection broke, or no answer came in time.
/// Not an answer it gave (a status, even 503), nor a closed client.
pub(super) fn stopped_answering(e: &Error) -> bool {
    matches!(
        e,
        Error::Io(_) | Error::Address(_) | Error::Http(HttpError::UnexpectedEof)
    )
}

impl Inner {
    /// Runs `attempt` at the broker in use. If that broker stopped
    /// answering, the client moves to the next one, and when nothing had
    /// reached the first, `attempt` runs once more there.
    pub(super) fn with_failover<T>(
        &self,
        mut attempt: impl FnMut(At) -> Result<T, Failed>,
    ) -> Result<T, Error> {
        let at = self.brokers.current();
        let failed = match attempt(at) {
            Ok(value) => {
                self.brokers.answered();
                return Ok(value);
            }
            Err(failed) => failed,
        };
        if !stopped_answering(&failed.error) {
            return Err(failed.error);
        }
        let next = match self.brokers.move_on(at, &failed.error) {
            Some(next) if !failed.reached && next.index != at.index => next,
            _ => return Err(failed.error),
        };
        match attempt(next) {
            Ok(value) => {
                self.brokers.answered();
                Ok(value)
            }
            Err(failed) => {
                if stopped_answering(&failed.error) {
                    self.brokers.move_on(next, &failed.error);
                }
                Err(failed.error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> BrokerList {
        BrokerList::new((0..n).map(|i| format!("b{i}:9999")).collect())
    }

    #[test]
    fn every_kind_of_address_list_converts() {
        let a = "a:1".to_string();
        let v = vec!["a:1".to_string(), "b:2".to_string()];
        let two = vec!["a:1".to_string(), "b:2".to_string()];
        assert_eq!("a:1".into_brokers(), ["a:1"]);
        assert_eq!(a.clone().into_brokers(), ["a:1"]);
        assert_eq!((&a).into_brokers(), ["a:1"]);
        assert_eq!(Box::<str>::from("a:1").into_brokers(), ["a:1"]);
        assert_eq!(Cow::Borrowed("a:1").into_brokers(), ["a:1"]);
        assert_eq!(["a:1", "b:2"].into_brokers(), two);
        assert_eq!((&["a:1", "b:2"]).into_brokers(), two);
        assert_eq!((&v).into_brokers(), two);
        assert_eq!(v[..].into_brokers(), two);
        assert_eq!(v.into_brokers(), two);
        assert!(Vec::<String>::new().into_brokers().is_empty());
        assert!(<[&str; 0]>::default().into_brokers().is_empty());
    }

    #[test]
    fn moves_round_robin_once_per_failure() {
        let brokers = list(3);
        let start = brokers.current();
        assert_eq!(start.index, 0);
        let b = brokers.move_on(start, &"refused").unwrap();
        assert_eq!((b.epoch, b.index), (1, 1));
        // A second thread reporting the same failure does not skip b.
        assert_eq!(brokers.move_on(start, &"refused"), Some(b));
        assert_eq!(brokers.current(), b);
        let c = brokers.move_on(b, &"timed out").unwrap();
        assert_eq!(c.index, 2);
        let back = brokers.move_on(c, &"refused").unwrap();
        assert_eq!((back.epoch, back.index), (3, 0));
        assert_eq!(brokers.addr(back.index), "b0:9999");
    }

    #[test]
    fn a_single_broker_never_moves() {
        let brokers = list(1);
        let at = brokers.current();
        assert_eq!(brokers.move_on(at, &"refused"), None);
        assert_eq!(brokers.current(), at);
        assert!(!brokers.several());
    }

    #[test]
    fn which_failures_mean_the_broker_stopped_answering() {
        use std::io::ErrorKind::{ConnectionRefused, ConnectionReset, TimedOut};
        for e in [
            Error::Io(ConnectionRefused.into()),
            Error::Io(ConnectionReset.into()),
            Error::Io(TimedOut.into()),
            Error::Http(HttpError::UnexpectedEof),
            Error::Address("gone:9999".into()),
        ] {
            assert!(stopped_answering(&e), "{e}");
        }
        for e in [
            Error::Status {
                status: 503,
                reason: "shutting down".into(),
            },
            Error::Http(HttpError::BadRequest("malformed status line")),
            Error::Closed,
            Error::InvalidTopic("empty"),
        ] {
            assert!(!stopped_answering(&e), "{e}");
        }
    }
}
