//! Access control: the `world`, `auth`, `digest`, `ip`, `sasl` and `x509` schemes, as
//! ZooKeeper 3.8 has them.
//!
//! A connection carries a list of authenticated ids: `ip:<address>` from the start,
//! `x509:<subject DN>` when it came with a verified client certificate, a
//! `digest:<user>:<base64(sha1(user:password))>` for each successful `addauth digest`, and
//! `sasl:<user>` after a SASL (DIGEST-MD5) login. The super user (`--super-digest`) gets a
//! `super` id, which passes every ACL.

use base64::Engine;
use fjord_shared::jute::{Acl, ErrorCode, Id};
use std::net::Ipv4Addr;

/// The digest id for `user:password`, as `DigestAuthenticationProvider.generateDigest` makes it.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = sha1_smol::Sha1::from(user_password.as_bytes())
        .digest()
        .bytes();
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Handles an auth packet: the ids to add, or `AuthFailed` for an unknown scheme. A digest
/// equal to `super_digest` (ZooKeeper's superDigest, `user:base64(sha1(user:password))`)
/// also makes the connection the super user.
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    super_digest: Option<&str>,
) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "digest" => {
            let s = std::str::from_utf8(auth).map_err(|_| ErrorCode::AuthFailed)?;
            let id = digest_id(s);
            let mut ids = Vec::with_capacity(2);
            if super_digest == Some(id.as_str()) {
                ids.push(Id {
                    scheme: "super".into(),
                    id: id.split(':').next().unwrap_or("").to_owned(),
                });
            }
            ids.push(Id {
                scheme: "digest".into(),
                id,
            });
            Ok(ids)
        }
        _ => Err(ErrorCode::AuthFailed),
    }
}

fn ip_matches(pattern: &str, addr: &str) -> bool {
    let (net, bits) = match pattern.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (pattern, Some(32)),
    };
    let (Ok(net), Ok(addr), Some(bits)) = (net.parse::<Ipv4Addr>(), addr.parse::<Ipv4Addr>(), bits)
    else {
        return pattern == addr;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(net) & mask == u32::from(addr) & mask
}

fn valid_ip(pattern: &str) -> bool {
    match pattern.split_once('/') {
        Some((n, b)) => n.parse::<Ipv4Addr>().is_ok() && b.parse::<u32>().is_ok_and(|b| b <= 32),
        None => pattern.parse::<std::net::IpAddr>().is_ok(),
    }
}

/// Whether `ids` grant `perm` under `acl` (`checkACL`).
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> Result<(), ErrorCode> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl.iter().filter(|a| a.perms & perm != 0) {
        let granted = match a.id.scheme.as_str() {
            "world" => a.id.id == "anyone",
            "digest" | "sasl" | "x509" => ids
                .iter()
                .any(|i| i.scheme == a.id.scheme && i.id == a.id.id),
            "ip" => ids
                .iter()
                .any(|i| i.scheme == "ip" && ip_matches(&a.id.id, &i.id)),
            _ => false,
        };
        if granted {
            return Ok(());
        }
    }
    Err(ErrorCode::NoAuth)
}

/// Validates an ACL from create or setACL and expands `auth` entries to the connection's
/// authenticated ids (`fixupACL`).
pub fn fixup(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::new();
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::new();
    for a in uniq {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                let mut any = false;
                for id in ids
                    .iter()
                    .filter(|i| matches!(i.scheme.as_str(), "digest" | "sasl" | "x509"))
                {
                    any = true;
                    out.push(Acl {
                        perms: a.perms,
                        id: id.clone(),
                    });
                }
                if !any {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            "digest" if a.id.id.contains(':') => out.push(a.clone()),
            "sasl" | "x509" if !a.id.id.is_empty() => out.push(a.clone()),
            "ip" if valid_ip(&a.id.id) => out.push(a.clone()),
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_shared::jute::perms;

    fn id(s: &str, i: &str) -> Id {
        Id {
            scheme: s.into(),
            id: i.into(),
        }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // Known value: `DigestAuthenticationProvider.generateDigest("super:test")`.
        assert_eq!(
            digest_id("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn world_digest_and_ip_grant() {
        let ip = vec![id("ip", "127.0.0.1")];
        let user = vec![id("ip", "127.0.0.1"), id("digest", &digest_id("u:p"))];
        let only_user = vec![Acl {
            perms: perms::ALL,
            id: id("digest", &digest_id("u:p")),
        }];
        assert_eq!(check(&only_user, perms::READ, &ip), Err(ErrorCode::NoAuth));
        assert_eq!(check(&only_user, perms::READ, &user), Ok(()));
        let read_only = vec![Acl {
            perms: perms::READ,
            id: id("world", "anyone"),
        }];
        assert_eq!(
            check(&read_only, perms::WRITE, &user),
            Err(ErrorCode::NoAuth)
        );
        assert_eq!(check(&read_only, perms::READ, &[]), Ok(()));
        let net = vec![Acl {
            perms: perms::ALL,
            id: id("ip", "127.0.0.0/8"),
        }];
        assert_eq!(check(&net, perms::DELETE, &ip), Ok(()));
        assert_eq!(
            check(&net, perms::DELETE, &[id("ip", "10.0.0.1")]),
            Err(ErrorCode::NoAuth)
        );
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_acls() {
        let ids = vec![id("ip", "127.0.0.1"), id("digest", "u:x")];
        let auth = vec![Acl {
            perms: perms::ALL,
            id: id("auth", ""),
        }];
        assert_eq!(
            fixup(&auth, &ids).unwrap(),
            vec![Acl {
                perms: perms::ALL,
                id: id("digest", "u:x")
            }]
        );
        assert_eq!(fixup(&auth, &ids[..1]), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[], &ids), Err(ErrorCode::InvalidAcl));
        let bad = vec![Acl {
            perms: perms::ALL,
            id: id("nope", "x"),
        }];
        assert_eq!(fixup(&bad, &ids), Err(ErrorCode::InvalidAcl));
        let bad_ip = vec![Acl {
            perms: perms::ALL,
            id: id("ip", "999.1.1.1"),
        }];
        assert_eq!(fixup(&bad_ip, &ids), Err(ErrorCode::InvalidAcl));
    }

    #[test]
    fn unknown_auth_scheme_fails() {
        assert_eq!(
            authenticate("kerberos", b"x", None),
            Err(ErrorCode::AuthFailed)
        );
        assert_eq!(
            authenticate("digest", b"u:p", None).unwrap(),
            vec![id("digest", &digest_id("u:p"))]
        );
    }

    #[test]
    fn super_digest_and_sasl_and_x509_ids() {
        let sup = digest_id("admin:pw");
        let ids = authenticate("digest", b"admin:pw", Some(&sup)).unwrap();
        assert_eq!(ids[0], id("super", "admin"));
        let only_sasl = vec![Acl {
            perms: perms::ALL,
            id: id("sasl", "kafka"),
        }];
        assert_eq!(
            check(&only_sasl, perms::WRITE, &ids),
            Ok(()),
            "super passes everything"
        );
        assert_eq!(
            check(&only_sasl, perms::WRITE, &[id("sasl", "kafka")]),
            Ok(())
        );
        assert_eq!(
            check(&only_sasl, perms::WRITE, &[id("sasl", "other")]),
            Err(ErrorCode::NoAuth)
        );
        let cert = vec![id("ip", "127.0.0.1"), id("x509", "CN=broker")];
        let auth = vec![Acl {
            perms: perms::ALL,
            id: id("auth", ""),
        }];
        assert_eq!(
            fixup(&auth, &cert).unwrap(),
            vec![Acl {
                perms: perms::ALL,
                id: id("x509", "CN=broker")
            }]
        );
        assert_eq!(
            check(&fixup(&auth, &cert).unwrap(), perms::READ, &cert),
            Ok(())
        );
    }
}
