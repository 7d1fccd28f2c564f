//! Response delays for the test backend: fixed or drawn from a distribution.

use std::time::Duration;

use crate::duration::parse_duration;

/// A delay distribution as given to `--delay-dist`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DelaySpec {
    Fixed(Duration),
    /// Exponential with this mean.
    Exp(Duration),
    Uniform(Duration, Duration),
    /// `slow` with probability `p`, else `fast`.
    Bimodal {
        fast: Duration,
        slow: Duration,
        p: f64,
    },
}

impl DelaySpec {
    pub fn parse(text: &str) -> Result<DelaySpec, String> {
        let (kind, args) = match text.split_once(':') {
            Some(parts) => parts,
            None => return parse_duration(text).map(DelaySpec::Fixed),
        };
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let usage = "use exp:5ms, uniform:1ms,5ms, bimodal:1ms,50ms,0.1 or a fixed duration";
        match (kind, args.as_slice()) {
            ("fixed", [d]) => Ok(DelaySpec::Fixed(parse_duration(d)?)),
            ("exp", [mean]) => Ok(DelaySpec::Exp(parse_duration(mean)?)),
            ("uniform", [lo, hi]) => {
                let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
                if lo > hi {
                    return Err(format!("{text:?}: the minimum is above the maximum"));
                }
                Ok(DelaySpec::Uniform(lo, hi))
            }
            ("bimodal", [fast, slow, p]) => {
                let p: f64 = p
                    .parse()
                    .map_err(|_| format!("{text:?}: {p:?} is not a probability"))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("{text:?}: the probability must be within 0..1"));
                }
                Ok(DelaySpec::Bimodal {
                    fast: parse_duration(fast)?,
                    slow: parse_duration(slow)?,
                    p,
                })
            }
            _ => Err(format!("{text:?}: unknown delay distribution ({usage})")),
        }
    }

    /// Draws one delay; `unit` is uniform in [0, 1).
    pub fn sample(&self, unit: f64) -> Duration {
        match *self {
            DelaySpec::Fixed(d) => d,
            DelaySpec::Exp(mean) => mean.mul_f64(-(1.0 - unit).ln()),
            DelaySpec::Uniform(lo, hi) => lo + (hi - lo).mul_f64(unit),
            DelaySpec::Bimodal { fast, slow, p } => {
                if unit < p {
                    slow
                } else {
                    fast
                }
            }
        }
    }
}

/// A small per-thread generator (xorshift64*): delays need no cryptographic quality and
/// must not cost a lock.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            DelaySpec::parse("exp:5ms"),
            Ok(DelaySpec::Exp(Duration::from_millis(5)))
        );
        assert_eq!(
            DelaySpec::parse("bimodal:1ms,50ms,0.1"),
            Ok(DelaySpec::Bimodal {
                fast: Duration::from_millis(1),
                slow: Duration::from_millis(50),
                p: 0.1
            })
        );
        assert_eq!(
            DelaySpec::parse("3ms"),
            Ok(DelaySpec::Fixed(Duration::from_millis(3)))
        );
        assert!(DelaySpec::parse("bimodal:1ms,50ms,2").is_err());
        assert!(DelaySpec::parse("pareto:1ms").is_err());
    }

    #[test]
    fn samples_follow_the_distribution() {
        let mut rng = Rng::new(42);
        let n = 20_000;
        let exp = DelaySpec::Exp(Duration::from_millis(5));
        let mean: f64 = (0..n)
            .map(|_| exp.sample(rng.next_unit()).as_secs_f64())
            .sum::<f64>()
            / n as f64;
        assert!((mean - 0.005).abs() < 0.0005, "mean {mean}");
        let bimodal = DelaySpec::parse("bimodal:1ms,50ms,0.1").unwrap();
        let slow = (0..n)
            .filter(|_| bimodal.sample(rng.next_unit()) == Duration::from_millis(50))
            .count();
        assert!((1600..2400).contains(&slow), "slow {slow}");
    }
}
