//! One module per kind of inner message: how it is sent and what receiving it does. A new
//! kind (group change, device sync, file manifest, call) gets a module here.

mod device_sync;
mod devices;
mod files;
mod group;
mod group_changes;
mod group_devices;
mod group_invites;
mod group_receipts;
mod group_sync;
mod group_welcome;
mod history;
mod receipts;
mod sync;
mod text;

pub(super) use devices::other_devices;
