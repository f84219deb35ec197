//! The public contract's JSON (`../shared/CONTRACT.md`, and the rest of the HTTP API): every
//! shape a client sends or reads, typed, each with its OpenAPI schema. The HTTP handlers and
//! the stream speak through these types; the layers below (domain, live, ingest, alert) know
//! no JSON of the contract.
//!
//! | file | shapes |
//! |---|---|
//! | [`figures`] | a figure, `nodes`, the figures answer, the catalogue, freshness, trends |
//! | [`events`] | incoming events (parsed for validation), the ingest answer, rejections, the quarantine |
//! | [`stream`] | `ClientMessage` and `ServerMessage` of `GET /ws` |
//! | [`imports`] | ledger uploads and import runs |
//! | [`org`] | the org tree view |
//! | [`alerts`] | alert notices and the alerts answer |
//! | [`ops`] | errors, health, readiness, jobs |
//! | [`unit`] | a unit's workspace: standing and required pace, report forms, its records |

pub mod alerts;
pub mod events;
pub mod figures;
pub mod imports;
pub mod ops;
pub mod org;
pub mod stream;
pub mod tasks;
pub mod unit;

pub use ops::ErrorBody;
