//! How typed keys and values become bytes for the shuffle.
//!
//! Keys are sorted, grouped and partitioned by their encoded bytes, as Hadoop does with raw
//! comparators; so every key encoding here preserves order: strings as UTF-8, unsigned
//! integers big-endian, signed integers big-endian with the sign bit flipped.

use crate::error::DecodeError;

/// A type that can travel through the shuffle.
pub trait Data: Sized + Send + Sync + 'static {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads back a value written by [`Data::encode`]; bytes it did not write are an error,
    /// never a panic.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

impl Data for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::new("string is not UTF-8"))
    }
}

impl Data for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }
}

impl Data for () {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(_bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(())
    }
}

macro_rules! unsigned_data {
    ($($t:ty),*) => {$(
        impl Data for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let arr = bytes.try_into().map_err(|_| {
                    DecodeError::new(concat!("wrong length for ", stringify!($t)))
                })?;
                Ok(<$t>::from_be_bytes(arr))
            }
        }
    )*};
}
unsigned_data!(u32, u64);

macro_rules! signed_data {
    ($($t:ty => $u:ty),*) => {$(
        impl Data for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                // Flipping the sign bit makes big-endian byte order match numeric order.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let arr = bytes.try_into().map_err(|_| {
                    DecodeError::new(concat!("wrong length for ", stringify!($t)))
                })?;
                Ok((<$u>::from_be_bytes(arr) ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed_data!(i32 => u32, i64 => u64);

/// Any serde type as a key or value, encoded as JSON: for structs, enums and collections
/// travelling through the shuffle without a hand-written [`Data`]. As a key it sorts and
/// groups by its JSON text (numbers do not sort numerically), so use it for values, or for
/// keys whose order does not matter.
///
/// ```
/// use quern_api::data::{Data, Json, to_bytes};
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Visit { page: String, ms: u32 }
///
/// let v = Json(Visit { page: "/".into(), ms: 12 });
/// assert_eq!(Json::<Visit>::decode(&to_bytes(&v)).unwrap(), v);
/// assert!(Json::<Visit>::decode(b"{}").is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Json<T>(pub T);

impl<T> Data for Json<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    fn encode(&self, out: &mut Vec<u8>) {
        // Only maps with non-string keys fail to serialize; they decode as an error then.
        if serde_json::to_writer(&mut *out, &self.0).is_err() {
            out.extend_from_slice(b"\"unserializable\"");
        }
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map(Json).map_err(|e| DecodeError::new(format!("bad JSON value: {e}")))
    }
}

/// A key that sorts in descending order (Hadoop's reversed sort comparator): the inner
/// encoding with every byte inverted, then a 0xFF end mark so that a longer key sorts before
/// its own prefix. Exact for fixed-width keys (integers) and for strings without NUL bytes.
///
/// ```
/// use quern_api::data::{Desc, to_bytes};
///
/// let mut keys = vec![Desc(3u64), Desc(10), Desc(7)];
/// keys.sort_by_key(to_bytes);
/// assert_eq!(keys, [Desc(10), Desc(7), Desc(3)]);
/// let mut words = vec![Desc("a".to_string()), Desc("b".into()), Desc("ab".into())];
/// words.sort_by_key(to_bytes);
/// assert_eq!(words, [Desc("b".to_string()), Desc("ab".into()), Desc("a".into())]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Desc<T>(pub T);

impl<T: Data> Data for Desc<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        self.0.encode(out);
        out[at..].iter_mut().for_each(|b| *b = !*b);
        out.push(0xFF);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let Some((&0xFF, inner)) = bytes.split_last() else {
            return Err(DecodeError::new("descending key without its end mark"));
        };
        let inverted: Vec<u8> = inner.iter().map(|b| !b).collect();
        T::decode(&inverted).map(Desc)
    }
}

/// The encoding of a key as [`crate::MapContext::emit`] takes it: borrowed (`str` for a
/// `String` key, `[u8]` for `Vec<u8>`, or the key type itself), written as the same bytes its
/// owned form encodes to, so emitting never needs an owned copy just to encode it.
pub trait Encode {
    /// Appends the encoding to `out`; the same bytes as the owned key's [`Data::encode`].
    fn encode_into(&self, out: &mut Vec<u8>);
}

impl<T: Data> Encode for T {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode(out);
    }
}

impl Encode for str {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl Encode for [u8] {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

/// Encodes a value into a fresh buffer.
pub fn to_bytes<T: Data>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_encodings_sort_like_the_numbers() {
        let nums = [-5i64, -1, 0, 1, 7, i64::MIN, i64::MAX];
        let mut by_bytes: Vec<i64> = nums.to_vec();
        by_bytes.sort_by_key(to_bytes);
        let mut by_value = nums.to_vec();
        by_value.sort();
        assert_eq!(by_bytes, by_value);
        for n in nums {
            assert_eq!(i64::decode(&to_bytes(&n)).unwrap(), n);
        }
        assert_eq!(u64::decode(&to_bytes(&42u64)).unwrap(), 42);
        assert!(u64::decode(b"abc").is_err());
    }
}
