use super::*;

#[test]
fn defaults_are_the_reference_configuration_and_round_trip() {
    let cfg = ModelConfig::default();
    assert_eq!(cfg.sequence.seq_len, 100);
    assert_eq!(cfg.sequence.pin_buckets, 100_000);
    assert_eq!(cfg.mmoe.expert_hidden, [256, 256]);
    cfg.validate().unwrap();
    let text = cfg.to_toml_string();
    assert_eq!(ModelConfig::from_toml_str(&text).unwrap(), cfg);
    assert_eq!(ModelConfig::from_toml_str("").unwrap(), cfg);
    let partial = "architecture = \"shared-bottom\"\n[mmoe]\nnum_experts = 4\n";
    let p = ModelConfig::from_toml_str(partial).unwrap();
    assert_eq!(p.architecture, Architecture::SharedBottom);
    assert_eq!((p.mmoe.num_experts, p.mmoe.expert_dropout), (4, 0.2));
}

#[test]
fn errors_name_the_key() {
    let err = |t: &str| ModelConfig::from_toml_str(t).unwrap_err().to_string();
    assert!(err("[sequence]\nheads = 5\n").contains("sequence.heads"));
    assert!(err("[mmoe]\nexpert_dropout = 1.0\n").contains("mmoe.expert_dropout"));
    assert!(err("[mmoe]\nexpert_hidden = []\n").contains("mmoe.expert_hidden"));
    assert!(err("[sequence]\nreadouts = [\"mean\", \"mean\"]\n").contains("listed twice"));
    assert!(err("[mmoe]\nnum_expert = 3\n").contains("num_expert"));
    assert!(err("architecture = \"moe\"\n").contains("moe"));
    assert_eq!(
        "single_task".parse::<Architecture>().unwrap(),
        Architecture::SingleTask
    );
    assert!("x".parse::<Architecture>().is_err());
}

#[test]
fn shape_checks() {
    let cfg = ModelConfig::default();
    let mut shape = ModelShape::dense_only(&["a", "b"], 0);
    assert!(matches!(
        cfg.validate_for(&shape),
        Err(ModelError::InvalidShape(_))
    ));
    shape.num_features = 3;
    cfg.validate_for(&shape).unwrap();
    shape.tasks.push("a".into());
    assert!(
        cfg.validate_for(&shape)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    let mut seq = ModelShape {
        tasks: vec!["t".into()],
        num_actions: 5,
        num_features: 0,
        has_history: true,
        has_candidate: false,
    };
    assert_eq!(cfg.active_readouts(&seq), [Readout::Mean]);
    let mut only_ta = cfg.clone();
    only_ta.sequence.readouts = vec![Readout::TargetAttention];
    assert!(only_ta.validate_for(&seq).is_err());
    seq.has_candidate = true;
    only_ta.validate_for(&seq).unwrap();
}
