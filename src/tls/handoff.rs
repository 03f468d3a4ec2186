//! [`Handoff`]: the TLS 1.3 record layer of an open session, taken from
//! rustls after the handshake (the hand-off kTLS uses) and run here with
//! `ring::aead`, sealing and opening records in place in the loop's buffers.
//!
//! Owns the record protection (keys, IVs, sequence numbers, nonce = IV xor
//! sequence number), the record framing (outer header, inner content type,
//! padding, size limits; headers and opened records are checked as rustls
//! 0.23 checks them, with its errors and alerts: the header's type,
//! version, emptiness and length before the body (`decode_error`), an
//! unprotected ChangeCipherSpec refused, any other record opened with the
//! additional data of application data whatever its outer type says; an
//! inner plaintext with no content type ends the session unanswered, a
//! protected ChangeCipherSpec with `unexpected_message`, an inner type
//! rustls cannot parse with `decode_error`; another record between the
//! parts of a handshake message, and the 33rd record in a row with no
//! content, end it unanswered), the post-handshake messages (KeyUpdate:
//! the read key updated, an `update_requested` answered with our own
//! KeyUpdate and the write key updated, the 33rd in a row with no
//! application data between refused as rustls refuses it;
//! NewSessionTicket on a client: handed to rustls, which stores it in the
//! client config's resumption store as it would one it had read itself,
//! so a later dial resumes with it; a ticket may be cut across records or
//! share one with others),
//! alerts (`close_notify` received and sent; the rest answered as rustls
//! 0.23 answers them, with the same error: four `user_canceled` warnings
//! taken, any other warning refused with `decode_error`, a fatal alert
//! ending the session unanswered, an unknown level refused with
//! `illegal_parameter`; see `Handoff::alert`) and the write key's
//! confidentiality limit (a KeyUpdate of our own before it is reached;
//! tests lower it through [`set_write_key_limit`]). rustls keeps the key
//! schedule ([`KernelConnection`]): new traffic secrets come from it. This
//! module never reads or writes a socket and never panics on what the peer
//! sends: a bad record is a [`rustls::Error`], after the alert it owes (if
//! rustls would send one) is sealed; the plaintext of the records before
//! it stays where it was opened to, for the caller to deliver.
//!
//! Only TLS 1.3 with AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305 is
//! handed off ([`supported`]); TLS 1.2 and anything else stay on rustls.
//!
//! # The peer's counts across the hand-off
//!
//! rustls counts KeyUpdates in a row (32 taken, the count reset by
//! application data), empty records in a row (32 taken) and warning
//! alerts (4 in a session) in private counters that its kernel API does
//! not hand over, and the loop never sees those records (rustls takes
//! them inside `process_tls_records`).
//!
//! The run of empty records is carried over as far as record headers
//! tell it ([`EmptyRun`]): the session reads the header of every record
//! it gives rustls, and a protected record of exactly 17 bytes (a content
//! type and the tag) has no content; the run of those at the end of what
//! rustls took is where this layer's count starts, so a run that began
//! under rustls ends at the 33rd in a row as rustls ends it (tested by
//! `a_run_of_empty_records_goes_on_across_the_hand_off`). An empty record
//! with padding is longer and cannot be told from one with content by
//! its header: it ends the run carried over (the count never exceeds
//! rustls's; it may fall short of it, by up to 32).
//!
//! The other counts start afresh: a peer may send 32 KeyUpdates in a row
//! to rustls and 32 more to this layer with no application data between
//! (the 65th ends the session), and 4 + 4 `user_canceled` warnings in a
//! session's life (the 9th ends it); a KeyUpdate or a warning cannot be
//! told by its header from a few bytes of data. That is the bound, and
//! it is kept rather than closed because what it guards is a ratio, not a
//! total: rustls alone takes 32 KeyUpdates (32 key derivations) per
//! application data record, again and again, so one more run of 32, once
//! per session (the hand-off happens once), is what a single one-byte
//! record more would buy the peer (and so for padded empty records); 4
//! more warnings cost 4 record openings, as 4 empty records do. Closing
//! it exactly would mean reading rustls's private state, or holding every
//! hand-off until the peer's last record was application data (which
//! changes when every session hands off, e.g. a server's first reply
//! after the handshake). Tested by
//! `counts_start_afresh_at_the_hand_off_and_stay_bounded` (handoff_tests).

use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305, NONCE_LEN,
};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::{
    AlertDescription, CipherSuite, ConnectionTrafficSecrets, ContentType, Error, InvalidMessage,
    PeerMisbehaved, ProtocolVersion, SupportedCipherSuite,
};

use super::records::Plain;

/// The most plaintext one record carries (RFC 8446 §5.1).
pub(super) const MAX_PLAIN: usize = 16 * 1024;
/// Record header: type, legacy version, length.
const HEADER: usize = 5;
/// The AEAD tag of every supported suite.
const TAG: usize = 16;
/// The most of a post-handshake message kept while its records arrive.
const MAX_HANDSHAKE: usize = 64 * 1024;

const APPLICATION_DATA: u8 = 23;
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const CHANGE_CIPHER_SPEC: u8 = 20;
const KEY_UPDATE: u8 = 24;
/// Alert levels (RFC 8446 §6).
const ALERT_WARNING: u8 = 1;
const ALERT_FATAL: u8 = 2;
const NEW_SESSION_TICKET: u8 = 4;
/// KeyUpdates followed in a row with no application data between them;
/// the next one ends the session, as rustls and BoringSSL end it: each
/// costs a key derivation (and, `update_requested`, an answer).
const KEY_UPDATES_IN_A_ROW: u8 = 32;
/// Warning alerts (`user_canceled`) a session takes; the next ends it, as
/// rustls and BoringSSL end it.
const WARNING_ALERTS: u8 = 4;
/// Records with no content (of any type) taken in a row; the next ends the
/// session with `TooManyEmptyFragments` and no alert, as rustls 0.23 ends
/// it (`ALLOWED_CONSECUTIVE_EMPTY_FRAGMENTS_MAX`): each costs an opening.
const EMPTY_RECORDS_IN_A_ROW: u8 = 32;
/// Outer content type of a heartbeat record (RFC 6520), which rustls
/// knows and so opens as any other.
const HEARTBEAT: u8 = 24;
/// rustls refuses a record header of this length or more, before its body.
const MAX_RECORD_LENGTH: u16 = 16 * 1024 + 2048;
/// The length of a protected record with no content: its inner content
/// type and the tag, no padding.
const EMPTY_SEALED: u16 = 1 + TAG as u16;

/// The run of records with no content at the end of the ciphertext a
/// session gave rustls, as far as their headers tell (see the module doc,
/// "The peer's counts across the hand-off"): fed every byte of it, in
/// order, before rustls decrypts it in place; records may be cut anywhere
/// between reads. Counts a record of [`EMPTY_SEALED`] bytes under an outer
/// type rustls opens, and ends the run at any other. Never counts one that
/// rustls does not: a 17-byte record before the handshake's keys (a
/// plaintext fragment) is always followed by the peer's `Finished`, a
/// protected record with content, before a hand-off can come.
#[derive(Debug, Default)]
pub(super) struct EmptyRun {
    /// The header of the record under way, and how much of it came.
    header: [u8; HEADER],
    header_len: usize,
    /// Bytes of the record under way's body not yet seen.
    body_left: usize,
    run: u8,
}

impl EmptyRun {
    /// Reads the headers in `bytes`, the next ciphertext from the peer.
    pub(super) fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(bytes.len());
                self.body_left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            let taken = (HEADER - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + taken].copy_from_slice(&bytes[..taken]);
            self.header_len += taken;
            bytes = &bytes[taken..];
            if self.header_len < HEADER {
                return;
            }
            self.header_len = 0;
            let [kind, _, _, high, low] = self.header;
            let len = u16::from_be_bytes([high, low]);
            self.body_left = usize::from(len);
            let opened = matches!(kind, APPLICATION_DATA | HANDSHAKE | ALERT);
            self.run = match opened && len == EMPTY_SEALED {
                true => self.run.saturating_add(1).min(EMPTY_RECORDS_IN_A_ROW),
                false => 0,
            };
        }
    }

    /// Empty records in a row at the end of what was read.
    pub(super) fn run(&self) -> u8 {
        self.run
    }
}

/// A lower write-key limit than the suite's, for tests (see
/// [`set_write_key_limit`]); `u64::MAX`: none.
static WRITE_KEY_LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sessions handed off in this process (see [`hand_offs`]).
static HAND_OFFS: AtomicU64 = AtomicU64::new(0);

/// Tests only: sessions handed off from now on seal at most `records`
/// records under one write key before a KeyUpdate of their own (the same
/// code as at the suite's confidentiality limit, reached in milliseconds).
/// `u64::MAX` restores the suite's limit.
pub(super) fn set_write_key_limit(records: u64) {
    // Relaxed: a setting read once per hand-off; tests set it before the
    // sessions it is meant for exist (their creation orders it).
    WRITE_KEY_LIMIT.store(records, Ordering::Relaxed);
}

/// Tests only: how many sessions of this process took their record layer
/// from rustls.
pub(super) fn hand_offs() -> u64 {
    // Relaxed: a count read after the test synchronised with the loop
    // (a reply received); no other memory depends on it.
    HAND_OFFS.load(Ordering::Relaxed)
}

/// Whether a session that negotiated `version` and `suite` can be handed off.
pub(super) fn supported(
    version: Option<ProtocolVersion>,
    suite: Option<SupportedCipherSuite>,
) -> bool {
    version == Some(ProtocolVersion::TLSv1_3)
        && suite.is_some_and(|s| {
            matches!(
                s.suite(),
                CipherSuite::TLS13_AES_128_GCM_SHA256
                    | CipherSuite::TLS13_AES_256_GCM_SHA384
                    | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            )
        })
}

/// rustls's key schedule, kept for key updates and (clients) tickets.
enum Kernel {
    Server(KernelConnection<ServerConnectionData>),
    Client(KernelConnection<ClientConnectionData>),
}

impl Kernel {
    fn update_rx(&mut self) -> Result<(u64, ConnectionTrafficSecrets), Error> {
        match self {
            Kernel::Server(k) => k.update_rx_secret(),
            Kernel::Client(k) => k.update_rx_secret(),
        }
    }

    fn update_tx(&mut self) -> Result<(u64, ConnectionTrafficSecrets), Error> {
        match self {
            Kernel::Server(k) => k.update_tx_secret(),
            Kernel::Client(k) => k.update_tx_secret(),
        }
    }
}

/// One direction's protection: key, IV and the next sequence number.
struct Protection {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Protection {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<Self, Error> {
        let (algorithm, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => return Err(Error::General("cipher suite not handed off".into())),
        };
        let key = UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| Error::General("traffic key of the wrong length".into()))?;
        let iv = <[u8; NONCE_LEN]>::try_from(iv.as_ref())
            .map_err(|_| Error::General("traffic IV of the wrong length".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The next record's nonce (IV xor sequence number); the sequence
    /// number must not wrap (RFC 8446 §5.3): the session ends instead.
    fn next_nonce(&mut self) -> Result<Nonce, Error> {
        if self.seq == u64::MAX {
            return Err(Error::EncryptError);
        }
        let mut nonce = self.iv;
        for (b, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *b ^= s;
        }
        self.seq += 1;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// Why [`Handoff::open`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Opened {
    /// No whole record is left.
    Idle,
    /// The destination is full; whole records may be left.
    Full,
    /// The peer sent `close_notify` (whatever follows is ignored).
    PeerClosed,
}

/// A session's record layer after the hand-off.
pub(crate) struct Handoff {
    kernel: Kernel,
    rx: Protection,
    tx: Protection,
    /// Records sealed under one write key before a KeyUpdate of our own.
    tx_limit: u64,
    /// A post-handshake message whose records have not all come.
    handshake: Vec<u8>,
    /// Our `close_notify` (or a fatal alert) was sealed: nothing more is.
    tx_closed: bool,
    /// KeyUpdates still followed before application data comes (see
    /// [`KEY_UPDATES_IN_A_ROW`]).
    key_updates_left: u8,
    /// Warning alerts still taken (see [`WARNING_ALERTS`]).
    warnings_left: u8,
    /// Records with no content opened since the last with some (see
    /// [`EMPTY_RECORDS_IN_A_ROW`]).
    empty_in_a_row: u8,
}

impl Handoff {
    /// Takes the record layer of a server whose handshake is complete and
    /// which owes the peer nothing.
    /// `empty`: the run of empty records rustls took last ([`EmptyRun`]).
    pub(super) fn server(
        conn: UnbufferedServerConnection,
        empty: &EmptyRun,
    ) -> Result<Self, Error> {
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        let limit = limit(kernel.negotiated_cipher_suite());
        Self::new(secrets, Kernel::Server(kernel), limit, empty)
    }

    /// As [`server`](Self::server), for a client.
    pub(super) fn client(
        conn: UnbufferedClientConnection,
        empty: &EmptyRun,
    ) -> Result<Self, Error> {
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        let limit = limit(kernel.negotiated_cipher_suite());
        Self::new(secrets, Kernel::Client(kernel), limit, empty)
    }

    fn new(
        secrets: rustls::ExtractedSecrets,
        kernel: Kernel,
        tx_limit: u64,
        empty: &EmptyRun,
    ) -> Result<Self, Error> {
        let layer = Self {
            kernel,
            rx: Protection::new(secrets.rx)?,
            tx: Protection::new(secrets.tx)?,
            tx_limit,
            handshake: Vec::new(),
            tx_closed: false,
            key_updates_left: KEY_UPDATES_IN_A_ROW,
            warnings_left: WARNING_ALERTS,
            empty_in_a_row: empty.run(),
        };
        // Relaxed: a count only (see `hand_offs`).
        HAND_OFFS.fetch_add(1, Ordering::Relaxed);
        Ok(layer)
    }

    /// Opens the whole records at the front of `buf` in place, plaintext to
    /// `plain`, until it is full. Records owed to the peer (a KeyUpdate
    /// answer, an alert) are sealed onto `out`. Returns the bytes of `buf`
    /// consumed and why it stopped; on an error the alert (if one is owed)
    /// is in `out`, and `plain` keeps what the records before it carried.
    pub(super) fn open(
        &mut self,
        buf: &mut [u8],
        plain: &mut Plain<'_>,
        out: &mut Vec<u8>,
    ) -> (usize, Result<Opened, Error>) {
        let mut at = 0;
        loop {
            if plain.full() {
                return (at, Ok(Opened::Full));
            }
            let Some(header) = buf.get(at..at + HEADER) else {
                return (at, Ok(Opened::Idle));
            };
            let (kind, len) = (header[0], u16::from_be_bytes([header[3], header[4]]));
            if let Some(e) = header_fault(kind, u16::from_be_bytes([header[1], header[2]]), len) {
                let e = Error::InvalidMessage(e);
                return (at, Err(self.fatal(e, AlertDescription::DecodeError, out)));
            }
            let len = usize::from(len);
            let Some(body) = buf.get_mut(at + HEADER..at + HEADER + len) else {
                return (at, Ok(Opened::Idle));
            };
            at += HEADER + len;
            if kind == CHANGE_CIPHER_SPEC {
                // Never protected: rustls parses it and refuses it.
                let (e, alert) = plaintext_change_cipher_spec(body);
                return (at, Err(self.fatal(e, alert, out)));
            }
            match self.open_record(body, plain, out) {
                Ok(true) => {}
                Ok(false) => return (at, Ok(Opened::PeerClosed)),
                Err(e) => return (at, Err(e)),
            }
        }
    }

    /// Opens one record; `Ok(false)`: it was `close_notify`.
    fn open_record(
        &mut self,
        body: &mut [u8],
        plain: &mut Plain<'_>,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        // The additional data is the header of an application data record
        // of this length (RFC 8446 §5.2), whatever the header said: rustls
        // opens a record of outer type alert or handshake, or of another
        // 0x03XX version, the same way.
        let len = body.len() as u16;
        let aad = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let opened = match self.rx.next_nonce() {
            Ok(nonce) => self.rx.key.open_in_place(nonce, Aad::from(aad), body),
            Err(e) => return Err(self.fatal(e, AlertDescription::InternalError, out)),
        };
        let Ok(inner) = opened else {
            return Err(self.fatal(Error::DecryptError, AlertDescription::BadRecordMac, out));
        };
        // The checks of rustls 0.23 on an opened record, in its order and
        // with its errors and alerts (`into_tls13_unpadded_message`, then
        // `handle_deframe_error`): the inner plaintext, padding included,
        // at most 2^14 + 1 bytes (RFC 8446 §5.2); a content type, the last
        // non-zero byte (zeros after it are padding, RFC 8446 §5.4); not a
        // protected ChangeCipherSpec (RFC 8446 §5); the content at most
        // 2^14 bytes.
        if inner.len() > MAX_PLAIN + 1 {
            return Err(self.fatal(
                Error::PeerSentOversizedRecord,
                AlertDescription::RecordOverflow,
                out,
            ));
        }
        let Some(end) = inner.iter().rposition(|&b| b != 0) else {
            // rustls ends the session here without an alert (RFC 8446
            // §5.4 asks for unexpected_message): nothing is sent, as
            // after the peer's fatal alert.
            self.tx_closed = true;
            return Err(Error::PeerMisbehaved(
                PeerMisbehaved::IllegalTlsInnerPlaintext,
            ));
        };
        if inner[end] == CHANGE_CIPHER_SPEC {
            return Err(self.fatal(
                Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
                AlertDescription::UnexpectedMessage,
                out,
            ));
        }
        if end > MAX_PLAIN {
            return Err(self.fatal(
                Error::PeerSentOversizedRecord,
                AlertDescription::RecordOverflow,
                out,
            ));
        }
        let content = &inner[..end];
        // Then, as rustls's deframer: a handshake message cut across
        // records must not have another record type between its parts
        // (RFC 8446 §5.1), and a run of empty records (any type) ends at
        // EMPTY_RECORDS_IN_A_ROW; both without an alert, as rustls.
        if !self.handshake.is_empty() && inner[end] != HANDSHAKE {
            self.tx_closed = true;
            return Err(Error::PeerMisbehaved(
                PeerMisbehaved::MessageInterleavedWithHandshakeMessage,
            ));
        }
        if !content.is_empty() {
            self.empty_in_a_row = 0;
        } else if self.empty_in_a_row == EMPTY_RECORDS_IN_A_ROW {
            self.tx_closed = true;
            return Err(Error::PeerMisbehaved(PeerMisbehaved::TooManyEmptyFragments));
        } else {
            self.empty_in_a_row += 1;
        }
        match inner[end] {
            APPLICATION_DATA => {
                self.key_updates_left = KEY_UPDATES_IN_A_ROW;
                plain.put(content);
                Ok(true)
            }
            ALERT => self.alert(content, out),
            HANDSHAKE => {
                if self.handshake.len() + content.len() > MAX_HANDSHAKE {
                    return Err(self.fatal(
                        Error::InvalidMessage(InvalidMessage::HandshakePayloadTooLarge),
                        AlertDescription::UnexpectedMessage,
                        out,
                    ));
                }
                self.handshake.extend_from_slice(content);
                self.post_handshake(out)?;
                Ok(true)
            }
            // Any other type (heartbeat included): rustls cannot parse
            // the message.
            _ => Err(self.fatal(
                Error::InvalidMessage(InvalidMessage::InvalidContentType),
                AlertDescription::DecodeError,
                out,
            )),
        }
    }

    /// An alert from the peer, answered as rustls 0.23 answers it
    /// (`CommonState::process_alert`): a level other than warning or
    /// fatal is refused with `illegal_parameter`; `close_notify` (at either
    /// level) ends its stream; a fatal alert ends the session with its
    /// description and no answer; a warning counts toward the session's
    /// [`WARNING_ALERTS`] (the fifth ends it), and in TLS 1.3 only
    /// `user_canceled` may be one: any other ends the session with its own
    /// description after a `decode_error` alert. An alert that does not
    /// parse ends it with rustls's `InvalidMessage` and `decode_error`.
    fn alert(&mut self, content: &[u8], out: &mut Vec<u8>) -> Result<bool, Error> {
        let (level, description) = match *content {
            [level, description] => (level, AlertDescription::from(description)),
            [] => return Err(self.undecodable(InvalidMessage::MissingData("AlertLevel"), out)),
            [_] => {
                return Err(self.undecodable(InvalidMessage::MissingData("AlertDescription"), out))
            }
            _ => {
                return Err(
                    self.undecodable(InvalidMessage::TrailingData("AlertMessagePayload"), out)
                )
            }
        };
        if level != ALERT_WARNING && level != ALERT_FATAL {
            return Err(self.fatal(
                Error::AlertReceived(description),
                AlertDescription::IllegalParameter,
                out,
            ));
        }
        if description == AlertDescription::CloseNotify {
            return Ok(false);
        }
        if level == ALERT_FATAL {
            // Nothing more is sent, not even an answer.
            self.tx_closed = true;
            return Err(Error::AlertReceived(description));
        }
        let Some(left) = self.warnings_left.checked_sub(1) else {
            // rustls ends the session here without an alert; this layer
            // says why, as it does for a run of KeyUpdates.
            return Err(self.fatal(
                Error::PeerMisbehaved(PeerMisbehaved::TooManyWarningAlertsReceived),
                AlertDescription::UnexpectedMessage,
                out,
            ));
        };
        self.warnings_left = left;
        if description != AlertDescription::UserCanceled {
            return Err(self.fatal(
                Error::AlertReceived(description),
                AlertDescription::DecodeError,
                out,
            ));
        }
        Ok(true)
    }

    /// An alert that does not parse: `decode_error`, as rustls answers.
    fn undecodable(&mut self, e: InvalidMessage, out: &mut Vec<u8>) -> Error {
        self.fatal(Error::InvalidMessage(e), AlertDescription::DecodeError, out)
    }

    /// Handles every whole message in the post-handshake buffer.
    fn post_handshake(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        while self.handshake.len() >= 4 {
            let kind = self.handshake[0];
            let len = usize::from(self.handshake[1]) << 16
                | usize::from(self.handshake[2]) << 8
                | usize::from(self.handshake[3]);
            if self.handshake.len() < 4 + len {
                if 4 + len > MAX_HANDSHAKE {
                    return Err(self.fatal(
                        Error::InvalidMessage(InvalidMessage::HandshakePayloadTooLarge),
                        AlertDescription::UnexpectedMessage,
                        out,
                    ));
                }
                return Ok(());
            }
            let message: Vec<u8> = self.handshake.drain(..4 + len).collect();
            let body = &message[4..];
            match (kind, &self.kernel) {
                (KEY_UPDATE, _) => {
                    let Some(left) = self.key_updates_left.checked_sub(1) else {
                        return Err(self.fatal(
                            Error::PeerMisbehaved(PeerMisbehaved::TooManyKeyUpdateRequests),
                            AlertDescription::UnexpectedMessage,
                            out,
                        ));
                    };
                    self.key_updates_left = left;
                    // A key change must end its record (RFC 8446 §5.1).
                    if !self.handshake.is_empty() {
                        return Err(self.fatal(
                            Error::InvalidMessage(InvalidMessage::TrailingData("KeyUpdate")),
                            AlertDescription::UnexpectedMessage,
                            out,
                        ));
                    }
                    let requested = match body {
                        [0] => false,
                        [1] => true,
                        // Parsed, but neither value: rustls's answer.
                        [_] => {
                            return Err(self.fatal(
                                Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
                                AlertDescription::IllegalParameter,
                                out,
                            ))
                        }
                        _ => {
                            return Err(self.fatal(
                                Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
                                AlertDescription::DecodeError,
                                out,
                            ))
                        }
                    };
                    let secrets = self.kernel.update_rx()?;
                    self.rx = Protection::new(secrets)?;
                    if requested && !self.tx_closed {
                        self.update_write_key(out)?;
                    }
                }
                (NEW_SESSION_TICKET, Kernel::Client(_)) => {
                    if let Kernel::Client(k) = &mut self.kernel {
                        if let Err(e) = k.handle_new_session_ticket(body) {
                            return Err(self.fatal(e, AlertDescription::DecodeError, out));
                        }
                    }
                }
                _ => {
                    return Err(self.fatal(
                        Error::InvalidMessage(InvalidMessage::UnexpectedMessage(
                            "handshake message after the handshake",
                        )),
                        AlertDescription::UnexpectedMessage,
                        out,
                    ))
                }
            }
        }
        Ok(())
    }

    /// Seals a KeyUpdate (`update_not_requested`) under the current write
    /// key onto `out`, then moves to the next one.
    fn update_write_key(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.seal_record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out)?;
        let secrets = self.kernel.update_tx()?;
        self.tx = Protection::new(secrets)?;
        Ok(())
    }

    /// Our `close_notify` (or a fatal alert) was sealed: nothing more is.
    pub(super) fn tx_closed(&self) -> bool {
        self.tx_closed
    }

    /// Seals `data` as application data records appended to `out`.
    pub(super) fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.tx_closed {
            return Err(Error::General("the TLS session is closed".into()));
        }
        for chunk in data.chunks(MAX_PLAIN) {
            if self.tx.seq >= self.tx_limit {
                self.update_write_key(out)?;
            }
            self.seal_record(APPLICATION_DATA, chunk, out)?;
        }
        Ok(())
    }

    /// Seals `close_notify` onto `out` (once); nothing is sealed after it.
    pub(super) fn close_notify(&mut self, out: &mut Vec<u8>) {
        if !self.tx_closed {
            // Warning level, as RFC 8446 §6.1 asks of closure alerts.
            let _ = self.seal_record(
                ALERT,
                &[ALERT_WARNING, u8::from(AlertDescription::CloseNotify)],
                out,
            );
            self.tx_closed = true;
        }
    }

    /// Seals a fatal alert onto `out` (if anything may still be sent) and
    /// returns `e`.
    fn fatal(&mut self, e: Error, alert: AlertDescription, out: &mut Vec<u8>) -> Error {
        if !self.tx_closed {
            let _ = self.seal_record(ALERT, &[ALERT_FATAL, u8::from(alert)], out);
            self.tx_closed = true;
        }
        e
    }

    /// Seals one record of type `kind` carrying `data` (at most
    /// [`MAX_PLAIN`]), appended to `out`.
    fn seal_record(&mut self, kind: u8, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let nonce = self.tx.next_nonce()?;
        let len = data.len() + 1 + TAG;
        let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let start = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.push(kind);
        let body = &mut out[start + HEADER..];
        match self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), body)
        {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(Error::EncryptError)
            }
        }
    }
}

/// What is wrong with a record header of outer content type `kind`, legacy
/// version `version` and length `len`, checked as rustls 0.23 checks it
/// before it waits for the body (`read_opaque_message_header`), its
/// errors answered with `decode_error`. A length above 2^14 + 256 (RFC
/// 8446 §5.2) but below rustls's limit passes, as in rustls: the record is
/// read whole and fails as it opens (`bad_record_mac`), or, opened, as too
/// long (`record_overflow`), with rustls's errors.
fn header_fault(kind: u8, version: u16, len: u16) -> Option<InvalidMessage> {
    let known = matches!(
        kind,
        CHANGE_CIPHER_SPEC | ALERT | HANDSHAKE | APPLICATION_DATA | HEARTBEAT
    );
    // rustls's own names: SSLv2 (as it spells it), DTLS 1.0, 1.2, 1.3.
    let known_version = version >> 8 == 3 || matches!(version, 0x0002 | 0xfeff | 0xfefd | 0xfefc);
    let fault = if !known {
        InvalidMessage::InvalidContentType
    } else if !known_version {
        InvalidMessage::UnknownProtocolVersion
    } else if kind != APPLICATION_DATA && len == 0 {
        InvalidMessage::InvalidEmptyPayload
    } else if len >= MAX_RECORD_LENGTH {
        InvalidMessage::MessageTooLarge
    } else {
        return None;
    };
    Some(fault)
}

/// An unprotected ChangeCipherSpec record after the handshake, refused as
/// rustls refuses it: its payload parsed (one byte, 1) and then refused by
/// the traffic state, or not parsed.
fn plaintext_change_cipher_spec(payload: &[u8]) -> (Error, AlertDescription) {
    match payload {
        [1] => (
            Error::InappropriateMessage {
                expect_types: vec![ContentType::ApplicationData, ContentType::Handshake],
                got_type: ContentType::ChangeCipherSpec,
            },
            AlertDescription::UnexpectedMessage,
        ),
        [1, ..] => (
            Error::InvalidMessage(InvalidMessage::TrailingData("ChangeCipherSpecPayload")),
            AlertDescription::DecodeError,
        ),
        _ => (
            Error::InvalidMessage(InvalidMessage::InvalidCcs),
            AlertDescription::DecodeError,
        ),
    }
}

/// Records sealed under one key before a KeyUpdate of our own: rustls's
/// confidentiality limit for the suite, less a margin (rustls updates at
/// the same point when it runs the record layer), or the tests' lower
/// limit ([`set_write_key_limit`]).
pub(super) fn limit(suite: SupportedCipherSuite) -> u64 {
    let limit = suite
        .tls13()
        .map_or(u64::MAX, |s| s.common.confidentiality_limit);
    // Relaxed: see `set_write_key_limit`.
    let test_limit = WRITE_KEY_LIMIT.load(Ordering::Relaxed);
    limit.saturating_sub(1 << 10).min(test_limit).max(1)
}
