//! Signed, versioned device lists (see the module docs of [`crate::device`]).

use std::fmt;

use prost::Message as _;

use super::{DEVICE_LIST_FORMAT, MAX_DEVICE_LIST_BYTES, MAX_DEVICES, check_name};
use crate::error::{CryptoError, Result};
use crate::identity::{Identity, PublicIdentity};
use crate::pb;
use crate::sign::{self, CTX_DEVICE_LIST};

const W: &str = "device list";

/// One device of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The device's public identity (for the first entry, the account's own).
    pub device: PublicIdentity,
    /// Name chosen by the user; at most [`super::MAX_DEVICE_NAME_BYTES`].
    pub name: String,
    /// Unix seconds at which it was added.
    pub added_at: u64,
}

impl DeviceEntry {
    fn to_pb(&self) -> pb::DeviceEntry {
        pb::DeviceEntry {
            device: Some(self.device.to_pb()),
            name: self.name.clone(),
            added_at: self.added_at,
        }
    }
}

/// A verified device list, signed by its account. Build one with [`DeviceList::genesis`] and
/// change it with [`DeviceList::with_device`] / [`DeviceList::without_device`]; read one with
/// [`DeviceList::from_bytes`]. Two lists are equal when their signed bytes are.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceList {
    account: [u8; 32],
    version: u64,
    issued_at: u64,
    devices: Vec<DeviceEntry>,
    /// The canonical `DeviceList` encoding that was signed.
    body: Vec<u8>,
    signature: [u8; 64],
}

impl fmt::Debug for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceList")
            .field("account", &hex::encode(&self.account[..4]))
            .field("version", &self.version)
            .field("issued_at", &self.issued_at)
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl DeviceList {
    /// The first list of `account`: version 1, one entry, the account's own identity.
    pub fn genesis(account: &Identity, name: &str, now: u64) -> Result<DeviceList> {
        let entry = DeviceEntry {
            device: account.public(),
            name: name.to_owned(),
            added_at: now,
        };
        Self::sign(account, 1, now, vec![entry])
    }

    /// The next version with `device` added at the end. `account` must be this list's account;
    /// `device` must be a valid public identity not listed yet, and the list not full.
    pub fn with_device(
        &self,
        account: &Identity,
        device: PublicIdentity,
        name: &str,
        now: u64,
    ) -> Result<DeviceList> {
        self.check_signer(account)?;
        if self.contains(&device.identity_key) {
            return Err(CryptoError::DeviceAlreadyListed);
        }
        if self.devices.len() >= MAX_DEVICES {
            return Err(CryptoError::TooManyDevices { max: MAX_DEVICES });
        }
        device.verify()?;
        let mut devices = self.devices.clone();
        devices.push(DeviceEntry {
            device,
            name: name.to_owned(),
            added_at: now,
        });
        Self::sign(account, self.next_version()?, now, devices)
    }

    /// The next version without the device `device_key`. The account's own entry cannot be
    /// removed ([`CryptoError::PrimaryDevice`]).
    pub fn without_device(
        &self,
        account: &Identity,
        device_key: &[u8; 32],
        now: u64,
    ) -> Result<DeviceList> {
        self.check_signer(account)?;
        if *device_key == self.account {
            return Err(CryptoError::PrimaryDevice);
        }
        if !self.contains(device_key) {
            return Err(CryptoError::DeviceNotListed);
        }
        let devices = self
            .devices
            .iter()
            .filter(|e| e.device.identity_key != *device_key)
            .cloned()
            .collect();
        Self::sign(account, self.next_version()?, now, devices)
    }

    /// Whether `new` should replace `held` (the list held of that account, if any):
    /// `Ok(true)` for a higher version (or nothing held), `Ok(false)` for the same list,
    /// [`CryptoError::WrongAccount`] for another account's list,
    /// [`CryptoError::DeviceListRollback`] for a lower version and
    /// [`CryptoError::DeviceListEquivocation`] for another list with the same version.
    pub fn supersedes(held: Option<&DeviceList>, new: &DeviceList) -> Result<bool> {
        let Some(held) = held else {
            return Ok(true);
        };
        if held.account != new.account {
            return Err(CryptoError::WrongAccount);
        }
        match new.version.cmp(&held.version) {
            std::cmp::Ordering::Greater => Ok(true),
            std::cmp::Ordering::Less => Err(CryptoError::DeviceListRollback {
                held: held.version,
                got: new.version,
            }),
            std::cmp::Ordering::Equal if held == new => Ok(false),
            std::cmp::Ordering::Equal => Err(CryptoError::DeviceListEquivocation {
                version: new.version,
            }),
        }
    }

    /// The account's identity key (the signer, and the first entry's key).
    pub fn account(&self) -> [u8; 32] {
        self.account
    }

    /// 1 for the genesis, + 1 per change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Unix seconds at which this version was signed.
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The entries, the account's own first.
    pub fn devices(&self) -> &[DeviceEntry] {
        &self.devices
    }

    /// Whether the identity key `device_key` is one of the account's devices (the account's
    /// own key included).
    pub fn contains(&self, device_key: &[u8; 32]) -> bool {
        self.device(device_key).is_some()
    }

    /// The entry of the identity key `device_key`.
    pub fn device(&self, device_key: &[u8; 32]) -> Option<&DeviceEntry> {
        self.devices
            .iter()
            .find(|e| e.device.identity_key == *device_key)
    }

    /// The `SignedDeviceList` encoding (what [`DeviceList::from_bytes`] reads).
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::SignedDeviceList {
            format: DEVICE_LIST_FORMAT,
            list: self.body.clone(),
            signature: self.signature.to_vec(),
        }
        .encode_to_vec()
    }

    /// Reads a `SignedDeviceList`: size, canonical encoding, format, structure and limits, the
    /// account's signature and every entry's public identity.
    pub fn from_bytes(b: &[u8]) -> Result<DeviceList> {
        if b.len() > MAX_DEVICE_LIST_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!("{} bytes, max {MAX_DEVICE_LIST_BYTES}", b.len()),
            ));
        }
        let signed = pb::SignedDeviceList::decode(b).map_err(|e| CryptoError::malformed(W, e))?;
        if signed.format != DEVICE_LIST_FORMAT {
            return Err(CryptoError::UnsupportedVersion {
                what: W,
                version: signed.format,
            });
        }
        if signed.encode_to_vec() != b {
            return Err(CryptoError::malformed(W, "non-canonical encoding"));
        }
        let signature: [u8; 64] = sign::array(&signed.signature, W, "signature")?;
        let list = Self::parse(signed.list, signature)?;
        sign::verify(
            &list.account,
            &list.signature,
            W,
            CTX_DEVICE_LIST,
            &[&DEVICE_LIST_FORMAT.to_be_bytes(), &list.body],
        )?;
        for e in &list.devices {
            e.device.verify()?;
        }
        Ok(list)
    }

    fn check_signer(&self, account: &Identity) -> Result<()> {
        if account.public_ref().identity_key != self.account {
            return Err(CryptoError::WrongAccount);
        }
        Ok(())
    }

    fn next_version(&self) -> Result<u64> {
        self.version
            .checked_add(1)
            .ok_or_else(|| CryptoError::malformed(W, "version exhausted"))
    }

    fn sign(
        account: &Identity,
        version: u64,
        issued_at: u64,
        devices: Vec<DeviceEntry>,
    ) -> Result<DeviceList> {
        let body = pb::DeviceList {
            account: account.public_ref().identity_key.to_vec(),
            version,
            issued_at,
            devices: devices.iter().map(DeviceEntry::to_pb).collect(),
        }
        .encode_to_vec();
        let signature = sign::sign(
            account.signing_key(),
            CTX_DEVICE_LIST,
            &[&DEVICE_LIST_FORMAT.to_be_bytes(), &body],
        );
        let list = Self::parse(body, signature)?;
        let len = list.to_bytes().len();
        if len > MAX_DEVICE_LIST_BYTES {
            return Err(CryptoError::malformed(
                W,
                format!("{len} bytes, max {MAX_DEVICE_LIST_BYTES}"),
            ));
        }
        Ok(list)
    }

    /// Structure and limits of a body; no signatures checked.
    fn parse(body: Vec<u8>, signature: [u8; 64]) -> Result<DeviceList> {
        let p =
            pb::DeviceList::decode(body.as_slice()).map_err(|e| CryptoError::malformed(W, e))?;
        if p.encode_to_vec() != body {
            return Err(CryptoError::malformed(W, "non-canonical list encoding"));
        }
        let account: [u8; 32] = sign::array(&p.account, W, "account")?;
        if p.version == 0 {
            return Err(CryptoError::malformed(W, "version 0"));
        }
        if p.devices.len() > MAX_DEVICES {
            return Err(CryptoError::TooManyDevices { max: MAX_DEVICES });
        }
        let mut devices: Vec<DeviceEntry> = Vec::with_capacity(p.devices.len());
        for e in p.devices {
            let device = e
                .device
                .as_ref()
                .ok_or_else(|| CryptoError::malformed(W, "entry without a device"))?;
            let device = PublicIdentity::from_pb(device)?;
            check_name(W, &e.name)?;
            if devices
                .iter()
                .any(|d| d.device.identity_key == device.identity_key)
            {
                return Err(CryptoError::malformed(W, "device listed twice"));
            }
            devices.push(DeviceEntry {
                device,
                name: e.name,
                added_at: e.added_at,
            });
        }
        match devices.first() {
            None => return Err(CryptoError::malformed(W, "no devices")),
            Some(first) if first.device.identity_key != account => {
                return Err(CryptoError::malformed(
                    W,
                    "first entry is not the account's own",
                ));
            }
            Some(_) => {}
        }
        Ok(DeviceList {
            account,
            version: p.version,
            issued_at: p.issued_at,
            devices,
            body,
            signature,
        })
    }
}
