//! One entry point for fuzzing the parsers that read what an unauthenticated peer sends:
//! SASL tokens (PLAIN, SCRAM client messages, DIGEST-MD5 responses), SCRAM server messages
//! as the client reads them, certificate subjects (the TLS peer's DER) and the settings
//! parsers. Used by the cargo-fuzz target in `tests/fuzz` and by a unit test that runs it
//! over generated inputs. It must never panic, whatever the bytes.

use super::client_config::{parse_properties, ClientSecurity};
use super::listener::Listeners;
use super::sasl::{Authenticator, Credentials, SaslMechanism};
use super::scram::{Credential, Mechanism, ScramClient, ScramServer, MIN_ITERATIONS};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The user the fuzzer may guess (and its password), so exchanges can get far.
pub const USER: &str = "fuzz";
pub const PASSWORD: &str = "fuzz-password";
/// The server nonce SCRAM exchanges use here, so a client-final can match it.
pub const SERVER_NONCE: &str = "fuzzservernonce";

fn credentials() -> &'static Credentials {
    static STORE: OnceLock<Credentials> = OnceLock::new();
    STORE.get_or_init(|| {
        let c = Credentials::default();
        let mut m = BTreeMap::new();
        for mech in [Mechanism::Sha256, Mechanism::Sha512] {
            if let Ok(cred) = Credential::new(mech, PASSWORD, b"fuzz-salt", MIN_ITERATIONS) {
                m.insert(mech, cred);
            }
        }
        c.set_user(USER, m);
        c
    })
}

/// Splits at the first 0xff byte (not valid UTF-8, so never inside a meaningful token).
fn halves(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Runs one input through the parser its first byte selects.
pub fn one_input(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 8 {
        0 => {
            if let Ok(mut a) = Authenticator::new(SaslMechanism::Plain) {
                let _ = a.step(rest, credentials());
                let _ = a.step(rest, credentials());
            }
        }
        1 | 2 => {
            let mech = if selector % 8 == 1 {
                Mechanism::Sha256
            } else {
                Mechanism::Sha512
            };
            let (first, last) = halves(rest);
            let mut server = ScramServer::with_nonce(mech, SERVER_NONCE.to_owned());
            if server
                .client_first(first, |u| credentials().scram(u, mech))
                .is_ok()
            {
                let _ = server.client_final(last);
            }
            let _ = server.client_final(last);
        }
        3 => {
            let _ = fjord_shared::x509::subject_rfc2253(rest);
        }
        4 => {
            let (first, last) = halves(rest);
            let mut server = fjord_shared::digest_md5::DigestServer::new("fuzznonce".to_owned());
            let lookup = |u: &str| (u == USER).then(|| PASSWORD.to_owned());
            let _ = server.step(first, lookup);
            let _ = server.step(last, lookup);
            let _ = server.step(last, lookup);
            let mut client =
                fjord_shared::digest_md5::DigestClient::new(USER, PASSWORD, "c".to_owned());
            let _ = client.step(first);
            let _ = client.step(last);
        }
        5 => {
            // The client side reads the server's SCRAM messages.
            let (first, last) = halves(rest);
            let mut client = ScramClient::with_nonce(
                Mechanism::Sha256,
                USER,
                PASSWORD,
                "clientnonce".to_owned(),
            );
            if client.server_first(first).is_ok() {
                let _ = client.server_final(last);
            }
        }
        6 => {
            let text = String::from_utf8_lossy(rest);
            let mut parts = text.splitn(4, '\n');
            let _ = Listeners::parse(
                parts.next().unwrap_or(""),
                parts.next(),
                parts.next(),
                parts.next(),
            );
            let _ = SaslMechanism::parse_list(&text);
        }
        _ => {
            let props = parse_properties(&String::from_utf8_lossy(rest));
            // Files the properties name are not read: only the parsing is fuzzed.
            let plain: BTreeMap<String, String> = props
                .into_iter()
                .filter(|(k, _)| !k.starts_with("ssl."))
                .collect();
            let _ = ClientSecurity::from_properties(&plain, std::path::Path::new("/nonexistent"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small, deterministic pseudo-random generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Seeds close to real messages, mutated byte by byte.
    const SEEDS: &[&[u8]] = &[
        b"\x00\x00fuzz\x00fuzz-password",
        b"\x01n,,n=fuzz,r=abc\xffc=biws,r=abcfuzzservernonce,p=AAAA",
        b"\x02n,a=fuzz,n=fuzz,r=x\xffc=eSws,r=xfuzzservernonce,p=",
        b"\x03\x30\x82\x01\x00\x30\x81\x80\xa0\x03\x02\x01\x02",
        b"\x04\xffusername=\"fuzz\",nonce=\"fuzznonce\",nc=00000001,cnonce=\"c\",digest-uri=\"zookeeper/zk-sasl-md5\",response=00,qop=auth",
        b"\x05r=clientnonceXYZ,s=c2FsdA==,i=4096\xffv=AAAA",
        b"\x06A://h:1,B://:2\nA:SSL,B:SASL_SSL\nA://x:1\nB",
        b"\x07security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.jaas.config=x username=\"a\" password=\"b\";",
    ];

    #[test]
    fn generated_inputs_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let seed = SEEDS[(rng.next() % SEEDS.len() as u64) as usize];
            let mut input = seed.to_vec();
            let edits = 1 + rng.next() % 8;
            for _ in 0..edits {
                let at = (rng.next() % (input.len() as u64 + 1)) as usize;
                match rng.next() % 3 {
                    0 if at < input.len() => input[at] = rng.next() as u8,
                    1 => input.insert(at, rng.next() as u8),
                    _ if at < input.len() => {
                        input.remove(at);
                    }
                    _ => {}
                }
            }
            one_input(&input);
        }
        for seed in SEEDS {
            for cut in 0..seed.len() {
                one_input(&seed[..cut]);
            }
        }
    }
}
