//! Walks the objects column family in id order, for export: every signed object the store
//! holds, byte for byte, resumable after a given id. Reads only.

use jangteo_protocol::ObjectId;
use rocksdb::{Direction, IteratorMode};

use super::{CF_OBJECTS, Store};
use crate::error::StoreError;

impl Store {
    /// Calls `f(id, bytes)` for each stored object whose id is above `after` (all when
    /// `None`), in id order, until `f` returns false.
    pub fn for_each_object(
        &self,
        after: Option<&ObjectId>,
        mut f: impl FnMut(ObjectId, &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mode = match after {
            Some(a) => IteratorMode::From(&a.0, Direction::Forward),
            None => IteratorMode::Start,
        };
        for item in self.db.iterator_cf(self.cf(CF_OBJECTS)?, mode) {
            let (k, v) = item?;
            let Ok(id) = <[u8; 32]>::try_from(&k[..]) else {
                return Err(StoreError::Corrupt("object key"));
            };
            if after.is_some_and(|a| a.0 == id) {
                continue;
            }
            if !f(ObjectId(id), &v) {
                break;
            }
        }
        Ok(())
    }
}
