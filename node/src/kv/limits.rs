/// Input limits, checked before a command is proposed (never inside apply, so
/// every member applies the same log the same way whatever its configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Keys are index entries held in memory on every member; 4 KiB keeps a
    /// range scan's memory bounded.
    pub key_bytes_max: usize,
    /// A value travels in one log entry and one gRPC message; 1 MiB keeps an
    /// AppendEntries batch well under the 4 MiB default gRPC message limit.
    pub value_bytes_max: usize,
    /// Upper bound on keys returned by one Range.
    pub range_limit_max: u32,
    /// Upper bound on the key and value bytes of one Range reply: the reply is
    /// built in memory and sent in one gRPC message, so a scan over large values
    /// stops early (`more = true`) instead of growing without bound.
    pub range_bytes_max: usize,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            key_bytes_max: 4 * 1024,
            value_bytes_max: 1024 * 1024,
            range_limit_max: 10_000,
            range_bytes_max: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("key must not be empty")]
    EmptyKey,
    #[error("key is {len} bytes, the limit is {max} bytes")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value is {len} bytes, the limit is {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    #[error("expected value is {len} bytes, the limit is {max} bytes")]
    ExpectedValueTooLarge { len: usize, max: usize },
}

impl KvLimits {
    /// The largest KV request message accepted: a compare-and-swap carries a
    /// key, a value and an expected value, plus framing. Checked by the gRPC
    /// server before a handler runs, so no oversized request reaches the log.
    pub fn request_bytes_max(&self) -> usize {
        self.key_bytes_max + 2 * self.value_bytes_max + 64 * 1024
    }

    pub fn check_key(&self, key: &[u8]) -> Result<(), InputError> {
        if key.is_empty() {
            return Err(InputError::EmptyKey);
        }
        if key.len() > self.key_bytes_max {
            return Err(InputError::KeyTooLarge {
                len: key.len(),
                max: self.key_bytes_max,
            });
        }
        Ok(())
    }

    /// A compare-and-swap's expected value: it travels in the log entry like
    /// a value, so it has the same bound.
    pub fn check_expected_value(&self, value: &[u8]) -> Result<(), InputError> {
        self.check_value(value)
            .map_err(|_| InputError::ExpectedValueTooLarge {
                len: value.len(),
                max: self.value_bytes_max,
            })
    }

    pub fn check_value(&self, value: &[u8]) -> Result<(), InputError> {
        if value.len() > self.value_bytes_max {
            return Err(InputError::ValueTooLarge {
                len: value.len(),
                max: self.value_bytes_max,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversized_keys_are_refused() {
        let l = KvLimits::default();
        assert_eq!(l.check_key(b""), Err(InputError::EmptyKey));
        assert!(l.check_key(&vec![b'k'; 4096]).is_ok());
        assert_eq!(
            l.check_key(&vec![b'k'; 4097]),
            Err(InputError::KeyTooLarge {
                len: 4097,
                max: 4096
            })
        );
        assert!(l.check_value(&vec![0; 1 << 20]).is_ok());
        assert!(l.check_value(&vec![0; (1 << 20) + 1]).is_err());
        assert!(l.check_expected_value(&vec![0; 1 << 20]).is_ok());
        assert_eq!(
            l.check_expected_value(&vec![0; (1 << 20) + 1]),
            Err(InputError::ExpectedValueTooLarge {
                len: (1 << 20) + 1,
                max: 1 << 20
            })
        );
        // A maximal compare-and-swap fits in a request; twice a value does not fit twice.
        assert!(l.request_bytes_max() > l.key_bytes_max + 2 * l.value_bytes_max);
        assert!(l.request_bytes_max() < 4 * l.value_bytes_max);
    }
}
