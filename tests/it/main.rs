//! The one integration-test binary: real relays over real websockets, real files.

mod apply;
mod buzz;
mod buzz_app;
mod buzz_today;
mod buzz_world;
mod cli;
mod daemon;
mod discovery;
mod external_relay;
mod faults;
mod fixture_world;
mod hostile;
mod keyring;
mod messages;
mod ownership;
mod publish;
mod relay_read;
mod review;
mod review_browser;
mod secrets;
mod service;
mod store_race;
mod support;
mod terminal;
mod tls;
mod world;
