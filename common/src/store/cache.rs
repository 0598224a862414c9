//! Stores opened on demand by location, once each: a worker serves tasks of many jobs, each
//! naming its input and output location.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{open, ObjectStore};
use crate::config::S3Settings;
use crate::Location;

/// Locations whose stores are kept open.
const LOCATIONS_KEPT: usize = 256;

/// Opens each location's store once and hands out shared handles.
#[derive(Debug)]
pub struct StoreCache {
    s3: S3Settings,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl StoreCache {
    pub fn new(s3: S3Settings) -> StoreCache {
        StoreCache { s3, stores: Mutex::new(HashMap::new()) }
    }

    /// Uses `store` for `location` (a store with options, such as an excluded folder).
    pub fn insert(&self, location: &str, store: Arc<dyn ObjectStore>) {
        if let Ok(mut stores) = self.stores.lock() {
            stores.insert(location.to_owned(), store);
        }
    }

    /// The store for `location` (`s3://bucket/prefix` or a local path).
    pub async fn get(&self, location: &str) -> Result<Arc<dyn ObjectStore>, crate::location::LocationError> {
        if let Some(store) = self.stores.lock().ok().and_then(|s| s.get(location).cloned()) {
            return Ok(store);
        }
        let parsed = Location::parse(location)?;
        // Opened outside the lock: opening an S3 store may await the credential chain.
        let store = open(&parsed, &self.s3).await;
        if let Ok(mut stores) = self.stores.lock() {
            // Many locations (an API fed by strangers) start over rather than grow without
            // end; handles in use stay alive with their users.
            if stores.len() >= LOCATIONS_KEPT && !stores.contains_key(location) {
                stores.clear();
            }
            return Ok(stores.entry(location.to_owned()).or_insert(store).clone());
        }
        Ok(store)
    }
}
