//! Random bytes from the operating system (`/dev/urandom`), for secrets and nonces where
//! no crypto crate is at hand (the coordinator's session passwords, SASL nonces).

use std::io::Read;

/// Fills `buf` from the system's random source.
pub fn fill(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_and_differs() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        super::fill(&mut a).unwrap();
        super::fill(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
