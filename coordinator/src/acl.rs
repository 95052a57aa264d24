//! Access control: the `world`, `auth`, `digest` and `ip` schemes, as ZooKeeper 3.8 has them.
//!
//! A connection carries a list of authenticated ids: `ip:<address>` from the start, plus a
//! `digest:<user>:<base64(sha1(user:password))>` for each successful `addauth digest`.

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

/// Handles an auth packet: the id to add, or `AuthFailed` for an unknown scheme.
pub fn authenticate(scheme: &str, auth: &[u8]) -> Result<Id, ErrorCode> {
    match scheme {
        "digest" => {
            let s = std::str::from_utf8(auth).map_err(|_| ErrorCode::AuthFailed)?;
            Ok(Id {
                scheme: "digest".into(),
                id: digest_id(s),
            })
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
            "digest" => ids.iter().any(|i| i.scheme == "digest" && i.id == a.id.id),
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
                for id in ids.iter().filter(|i| i.scheme == "digest") {
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
        assert_eq!(authenticate("kerberos", b"x"), Err(ErrorCode::AuthFailed));
        assert_eq!(authenticate("digest", b"u:p").unwrap().id, digest_id("u:p"));
    }
}
