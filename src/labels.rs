//! Closed label sets: each is defined once, with [`labels!`], as an enum whose every
//! variant names its label. Metric label values, report columns and log fields come from
//! `ALL`, `LABELS` and `as_label`, never from a parallel list of strings.

/// Defines an enum of labels: `Variant = "label"` for each variant. The enum derives
/// `Clone, Copy, Debug, PartialEq, Eq, Hash` (add others with attributes of your own) and
/// gets `ALL` (its variants in order), `LABELS` (their labels, in the same order),
/// `as_label` and `from_label`.
#[macro_export]
macro_rules! labels {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in order.
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];
            /// Every label, in the order of [`Self::ALL`].
            pub const LABELS: [&'static str; [$($label),+].len()] = [$($label),+];

            /// The label (a metric label value, a report column, a log field).
            pub fn as_label(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }

            /// The variant of `label`, if it is one.
            #[allow(dead_code)]
            pub fn from_label(label: &str) -> Option<$name> {
                Self::ALL.into_iter().find(|v| v.as_label() == label)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::labels! {
        /// A test set.
        enum Colour {
            /// The first.
            Red = "red",
            Green = "green_ish",
        }
    }

    #[test]
    fn every_variant_has_its_label_in_order() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green]);
        assert_eq!(Colour::LABELS, ["red", "green_ish"]);
        assert_eq!(Colour::Green.as_label(), "green_ish");
        assert_eq!(Colour::from_label("red"), Some(Colour::Red));
        assert_eq!(Colour::from_label("blue"), None);
    }
}
