//! The local machine's cost profile (`[hardware]` in config, `--hardware` for replay): its
//! price amortized over months plus power, the figure local-vs-cloud break-even is against.

use serde::Serialize;

/// Days in the projected month.
pub const PROJECTION_DAYS: f64 = 30.0;

/// A local machine's cost profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardwareProfile {
    pub name: String,
    pub price_usd: f64,
    /// Amortization period.
    pub months: f64,
    /// Power draw under load.
    pub watts: f64,
    pub usd_per_kwh: f64,
    /// Hours a day the machine runs.
    pub hours_per_day: f64,
    /// Generation throughput, for a capacity estimate (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// True when the default profile was assumed (no `--hardware`).
    pub assumed: bool,
}

impl HardwareProfile {
    /// The decision guide's consumer GPU: RTX 4090 at $1,800 over 3 years, ~400 W,
    /// $0.15/kWh, running 24 h a day (~$50/month amortized + ~$43/month power).
    pub fn rtx4090() -> Self {
        Self {
            name: "RTX 4090".to_owned(),
            price_usd: 1800.0,
            months: 36.0,
            watts: 400.0,
            usd_per_kwh: 0.15,
            hours_per_day: 24.0,
            tokens_per_s: None,
            assumed: true,
        }
    }

    pub fn amortized_monthly_usd(&self) -> f64 {
        if self.months > 0.0 {
            self.price_usd / self.months
        } else {
            0.0
        }
    }

    pub fn power_monthly_usd(&self) -> f64 {
        self.watts / 1000.0 * self.hours_per_day * PROJECTION_DAYS * self.usd_per_kwh
    }

    pub fn monthly_usd(&self) -> f64 {
        self.amortized_monthly_usd() + self.power_monthly_usd()
    }
}

impl HardwareProfile {
    /// Keys of the numeric fields, as `--hardware` and the config's `[hardware]` name them.
    pub const KEYS: &'static str =
        "price_usd, months, watts, usd_per_kwh, hours_per_day, tokens_per_s";

    /// Sets the numeric field `key` (`price` or `price_usd`, `months`, `watts`,
    /// `usd_per_kwh`, `hours_per_day`, `tokens_per_s`) to `x`, validated.
    pub fn set(&mut self, key: &str, x: f64) -> Result<(), String> {
        if !x.is_finite() || x < 0.0 {
            return Err(format!("{key} must be a non-negative number, got {x}"));
        }
        match key {
            "price" | "price_usd" => self.price_usd = x,
            "months" if x > 0.0 => self.months = x,
            "months" => return Err("months must be positive".into()),
            "watts" => self.watts = x,
            "usd_per_kwh" => self.usd_per_kwh = x,
            "hours_per_day" if x <= 24.0 => self.hours_per_day = x,
            "hours_per_day" => return Err("hours_per_day must be at most 24".into()),
            "tokens_per_s" => self.tokens_per_s = Some(x),
            _ => return Err(format!("unknown key {key:?} ({}, name)", Self::KEYS)),
        }
        Ok(())
    }
}

impl std::str::FromStr for HardwareProfile {
    type Err = String;

    /// `rtx4090`, or `KEY=VALUE,...` with the keys of [`HardwareProfile::set`] and
    /// `name` (unset keys take the RTX 4090 values).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut hw = Self::rtx4090();
        hw.assumed = false;
        if s.trim() == "rtx4090" {
            return Ok(hw);
        }
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("hardware: expected KEY=VALUE, got {part:?}"))?;
            if k == "name" {
                hw.name = v.to_owned();
                continue;
            }
            let x: f64 = v
                .parse()
                .map_err(|_| format!("hardware: {k} must be a non-negative number, got {v:?}"))?;
            hw.set(k, x).map_err(|e| format!("hardware: {e}"))?;
        }
        Ok(hw)
    }
}
