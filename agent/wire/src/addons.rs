//! Add-ons on the wire: `roboku addons*` and `/v1/apps/{app}/addons...`.
//!
//! | method | path                                      | body            | answer            |
//! |--------|-------------------------------------------|-----------------|-------------------|
//! | GET    | /v1/apps/{app}/addons                     |                 | `Vec<AddonInfo>`  |
//! | POST   | /v1/apps/{app}/addons                     | [`CreateAddon`] | [`crate::ConfigChanged`] |
//! | POST   | /v1/apps/{app}/addons/{name}/attach       | [`AttachAddon`] | [`crate::ConfigChanged`] |
//! | POST   | /v1/apps/{app}/addons/{name}/detach       |                 | [`crate::ConfigChanged`] |
//! | POST   | /v1/apps/{app}/addons/{name}/destroy      | [`DestroyAddon`]| [`crate::ConfigChanged`] |
//! | POST   | /v1/apps/{app}/addons/{name}/backup       |                 | [`Backup`]        |
//! | POST   | /v1/apps/{app}/addons/{name}/backup?download=1 |            | the file's bytes  |

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CreateAddon {
    /// `sqlite`, `mqtt`, `redis` or `postgres`.
    pub kind: String,
    /// The attachment name (`--as`): the config var is `NAME_URL`.
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AttachAddon {
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DestroyAddon {
    pub confirm: String,
}

/// One add-on as an app sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AddonInfo {
    pub name: String,
    pub kind: String,
    /// The app that created it.
    pub owner: String,
    /// The config var this app gets.
    pub var: String,
    /// Every app it is attached to.
    pub attached: Vec<String>,
    /// `provisioned` (a file), `up`, `starting`, `crashed`, `stopped`, or `broken`.
    pub state: String,
    pub detail: Option<String>,
    pub port: Option<u16>,
    pub pid: Option<i32>,
    pub restarts: u32,
}

/// A backup made on the robot (`roboku addons:backup`): root's, 0600.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Backup {
    pub addon: String,
    pub path: String,
    pub bytes: u64,
}
