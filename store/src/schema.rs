//! Schema version check and migrations, run on every open.

use crate::backend::{Backend, Batch, Cf};
use crate::error::corrupt;
use crate::{Result, StoreError};

/// Schema version written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// `meta` key holding the schema version (4 bytes, big-endian). Keys starting with `store.`
/// are reserved for the store itself.
pub const SCHEMA_VERSION_KEY: &str = "store.schema_version";

/// A migration from version N to N+1. It must be idempotent: if the process dies before the
/// version bump is written, it runs again on the next open.
pub type Migration = fn(&dyn Backend) -> Result<()>;

/// `MIGRATIONS[i]` migrates version `i + 1` to `i + 2`. Empty while v1 is the only version.
const MIGRATIONS: &[Migration] = &[];

/// Check the version on disk and migrate it to [`SCHEMA_VERSION`].
pub(crate) fn check_and_migrate(backend: &dyn Backend) -> Result<()> {
    run(backend, MIGRATIONS, SCHEMA_VERSION)
}

pub(crate) fn version_batch(version: u32) -> Batch {
    let mut b = Batch::new();
    b.put(Cf::Meta, SCHEMA_VERSION_KEY, version.to_be_bytes());
    b
}

/// Read the stored schema version, if any.
pub fn stored_version(backend: &dyn Backend) -> Result<Option<u32>> {
    match backend.get(Cf::Meta, SCHEMA_VERSION_KEY.as_bytes())? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 4] = v
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("schema version", format!("{} bytes", v.len())))?;
            Ok(Some(u32::from_be_bytes(bytes)))
        }
    }
}

fn is_empty(backend: &dyn Backend) -> Result<bool> {
    for cf in Cf::ALL {
        if !backend.scan(cf, &[], None, 1, false)?.is_empty() {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) fn run(backend: &dyn Backend, migrations: &[Migration], current: u32) -> Result<()> {
    let mut version = match stored_version(backend)? {
        Some(v) => v,
        None if is_empty(backend)? => {
            backend.write(version_batch(current))?;
            return Ok(());
        }
        None => {
            return Err(corrupt(
                "schema version",
                "database holds data but no schema version",
            ));
        }
    };
    if version > current {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: current,
        });
    }
    if version == 0 {
        return Err(corrupt("schema version", "version 0"));
    }
    while version < current {
        let step = migrations
            .get((version - 1) as usize)
            .ok_or_else(|| corrupt("schema version", format!("no migration from v{version}")))?;
        step(backend)?;
        version += 1;
        backend.write(version_batch(version))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemBackend;

    fn marker(b: &dyn Backend) -> Result<()> {
        let mut batch = Batch::new();
        batch.put(Cf::Meta, "migrated", "yes");
        b.write(batch)
    }

    fn failing(_: &dyn Backend) -> Result<()> {
        Err(StoreError::InvalidInput("migration failed".into()))
    }

    #[test]
    fn fresh_database_gets_current_version() -> Result<()> {
        let b = MemBackend::new();
        run(&b, &[], 3)?;
        assert_eq!(stored_version(&b)?, Some(3));
        Ok(())
    }

    #[test]
    fn migrations_run_in_order_and_bump_version() -> Result<()> {
        let b = MemBackend::new();
        b.apply(version_batch(1));
        run(&b, &[marker], 2)?;
        assert_eq!(stored_version(&b)?, Some(2));
        assert_eq!(b.get(Cf::Meta, b"migrated")?, Some(b"yes".to_vec()));
        Ok(())
    }

    #[test]
    fn failed_migration_leaves_old_version() {
        let b = MemBackend::new();
        b.apply(version_batch(1));
        assert!(run(&b, &[failing], 2).is_err());
        assert_eq!(stored_version(&b).ok().flatten(), Some(1));
    }

    #[test]
    fn missing_migration_is_an_error() {
        let b = MemBackend::new();
        b.apply(version_batch(1));
        assert!(matches!(run(&b, &[], 2), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn newer_version_is_refused() {
        let b = MemBackend::new();
        b.apply(version_batch(5));
        assert!(matches!(
            run(&b, &[], 4),
            Err(StoreError::SchemaTooNew {
                found: 5,
                supported: 4
            })
        ));
    }

    #[test]
    fn data_without_version_is_refused() {
        let b = MemBackend::new();
        let mut batch = Batch::new();
        batch.put(Cf::Contacts, [1u8; 32], "x");
        b.apply(batch);
        assert!(matches!(run(&b, &[], 1), Err(StoreError::Corrupt { .. })));
    }
}
