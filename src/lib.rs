pub mod stratum;
