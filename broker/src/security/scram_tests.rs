//! SCRAM unit tests: the RFC 7677 exchange, Kafka's credential format, the kcat nonce
//! quirk, and every way a login can fail.

use super::*;

const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_credential() -> Credential {
    let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    Credential::new(Mechanism::Sha256, "pencil", &salt, 4096).unwrap()
}

#[test]
fn the_rfc_7677_exchange_as_server_and_as_client() {
    let mut server = ScramServer::with_nonce(Mechanism::Sha256, RFC_SERVER_NONCE.to_owned());
    let first = server
        .client_first(RFC_CLIENT_FIRST.as_bytes(), |u| {
            (u == "user").then(rfc_credential)
        })
        .unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), RFC_SERVER_FIRST);
    let (last, user) = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(last).unwrap(), RFC_SERVER_FINAL);
    assert_eq!(user, "user");

    let mut client = ScramClient::with_nonce(
        Mechanism::Sha256,
        "user",
        "pencil",
        "rOprNGfwEbeRWgbNEkqO".to_owned(),
    );
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
    let fin = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(fin).unwrap(), RFC_CLIENT_FINAL);
    client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
    assert_eq!(
        client.server_final(b"v=AAAA"),
        Err(ScramError::BadServer),
        "a server that does not know the password is caught"
    );
}

fn login(mech: Mechanism, stored: &str, user: &str, password: &str) -> Result<String, ScramError> {
    let credential = Credential::new(mech, stored, b"salt-of-the-earth", 4096).unwrap();
    let mut server = ScramServer::new(mech).unwrap();
    let mut client = ScramClient::new(mech, user, password).unwrap();
    let first = server.client_first(&client.client_first(), |u| {
        (u == "alice, the =admin").then(|| credential.clone())
    })?;
    let fin = client.server_first(&first)?;
    let (last, who) = server.client_final(&fin)?;
    client.server_final(&last)?;
    Ok(who)
}

#[test]
fn both_mechanisms_log_in_and_refuse_alike() {
    for mech in [Mechanism::Sha256, Mechanism::Sha512] {
        let user = "alice, the =admin"; // escaped as =2C and =3D on the wire
        assert_eq!(login(mech, "s3cret", user, "s3cret").unwrap(), user);
        let wrong = login(mech, "s3cret", user, "guess").unwrap_err();
        let unknown = login(mech, "s3cret", "mallory", "s3cret").unwrap_err();
        assert_eq!(wrong, ScramError::Failed(mech.name()));
        assert_eq!(
            unknown, wrong,
            "an unknown user fails exactly like a wrong password"
        );
    }
}

#[test]
fn kcat_repeats_its_nonce_in_the_final_message() {
    // librdkafka < 2.6.1 sends r=<cnonce><cnonce><snonce>, and its proof is computed over
    // that message as sent.
    let mech = Mechanism::Sha512;
    let credential = Credential::new(mech, "pw", b"NaCl", 4096).unwrap();
    let mut server = ScramServer::with_nonce(mech, "SNONCE".to_owned());
    let first = server
        .client_first(b"n,,n=kcat,r=CNONCE", |_| Some(credential.clone()))
        .unwrap();
    let first = String::from_utf8(first).unwrap();
    assert!(first.starts_with("r=CNONCESNONCE,"));
    let salted = mech.salted_password("pw", b"NaCl", 4096);
    let client_key = mech.mac(&salted, b"Client Key");
    let without_proof = "c=biws,r=CNONCECNONCESNONCE";
    let auth = format!("n=kcat,r=CNONCE,{first},{without_proof}");
    let signature = mech.mac(&mech.hash(&client_key), auth.as_bytes());
    let proof = B64.encode(xor(&client_key, &signature));
    let (_, user) = server
        .client_final(format!("{without_proof},p={proof}").as_bytes())
        .unwrap();
    assert_eq!(user, "kcat");
}

#[test]
fn nonces_that_do_not_match_are_refused() {
    let credential = rfc_credential();
    for final_nonce in [
        "rOprNGfwEbeRWgbNEkqO",                               // the client's only
        "XrOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k", // the server's cut short
        "other%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",                // not starting with the client's
    ] {
        let mut server = ScramServer::with_nonce(Mechanism::Sha256, RFC_SERVER_NONCE.to_owned());
        server
            .client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(credential.clone()))
            .unwrap();
        let msg = format!("c=biws,r={final_nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
        assert_eq!(
            server.client_final(msg.as_bytes()),
            Err(ScramError::Malformed("nonce does not match")),
            "{final_nonce}"
        );
    }
}

#[test]
fn malformed_and_out_of_turn_messages_are_errors_not_panics() {
    let lookup = |_: &str| Some(rfc_credential());
    for bad in [
        &b""[..],
        b"n",
        b"n,,",
        b"x,,n=user,r=abc",
        b"p=tls-unique,,n=user,r=abc",
        b"n,,n=user",
        b"n,,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,m=ext,n=user,r=abc",
        b"n,a=other,n=user,r=abc",
        b"\xff\xfe",
    ] {
        let mut server = ScramServer::with_nonce(Mechanism::Sha256, "s".to_owned());
        assert!(server.client_first(bad, lookup).is_err(), "{bad:?}");
    }
    let mut early = ScramServer::with_nonce(Mechanism::Sha256, RFC_SERVER_NONCE.to_owned());
    assert!(
        early.client_final(RFC_CLIENT_FINAL.as_bytes()).is_err(),
        "final before first"
    );
    assert!(
        early
            .client_first(RFC_CLIENT_FIRST.as_bytes(), lookup)
            .is_err(),
        "an exchange that went wrong stays failed"
    );
    let mut server = ScramServer::with_nonce(Mechanism::Sha256, RFC_SERVER_NONCE.to_owned());
    server
        .client_first(RFC_CLIENT_FIRST.as_bytes(), lookup)
        .unwrap();
    for bad in [
        &b"c=biws,r=x"[..],
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!!",
        b"c=cD10bHMtdW5pcXVlLCw=,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
    ] {
        let mut s = ScramServer::with_nonce(Mechanism::Sha256, RFC_SERVER_NONCE.to_owned());
        s.client_first(RFC_CLIENT_FIRST.as_bytes(), lookup).unwrap();
        assert!(s.client_final(bad).is_err(), "{bad:?}");
    }
    // A short proof fails like a wrong one.
    let mut s = ScramServer::with_nonce(Mechanism::Sha256, RFC_SERVER_NONCE.to_owned());
    s.client_first(RFC_CLIENT_FIRST.as_bytes(), lookup).unwrap();
    assert_eq!(
        s.client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA"),
        Err(ScramError::Failed("SCRAM-SHA-256"))
    );
    // One exchange per server: a second final is out of turn.
    server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert!(server.client_final(RFC_CLIENT_FINAL.as_bytes()).is_err());
}

#[test]
fn credentials_round_trip_kafkas_format() {
    let c = rfc_credential();
    let text = c.to_kafka();
    assert!(
        text.starts_with("salt=W22ZaJ0SNY7soEsUEjb6gQ==,stored_key="),
        "{text}"
    );
    assert!(text.ends_with(",iterations=4096"));
    assert_eq!(Credential::from_kafka(&text).unwrap(), c);
    assert!(Credential::from_kafka("salt=abc").is_err());
    assert!(Credential::from_kafka("salt=!,stored_key=a,server_key=b,iterations=4096").is_err());
    assert!(Credential::from_kafka("garbage").is_err());
    assert_eq!(
        Credential::new(Mechanism::Sha256, "p", b"s", 100),
        Err(ScramError::Iterations(100))
    );
    assert!(format!("{c:?}").contains("4096") && !format!("{c:?}").contains("stored"));
    let g = Credential::generate(Mechanism::Sha512, "p", 4096).unwrap();
    assert_eq!(g.salt.len(), 32);
    assert_ne!(
        g.salt,
        Credential::generate(Mechanism::Sha512, "p", 4096)
            .unwrap()
            .salt
    );
}
