use super::*;
use closeup_autograd::gradcheck::{assert_gradients, randn};
use ndarray::{Array2, array};
use rand::SeedableRng;

fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

fn tiny(early_fusion: bool, readouts: Vec<Readout>) -> (SequenceEncoder, HashEmbedding) {
    let cfg = SequenceConfig {
        seq_len: 5,
        pin_buckets: 1000,
        d_model: 8,
        layers: 2,
        heads: 2,
        ffn_hidden: 16,
        dropout: 0.1,
        early_fusion,
        readouts: readouts.clone(),
        first_k: 2,
        time_window_mask: TimeWindowMask::default(),
    };
    let mut r = rng(1);
    let pins = HashEmbedding::new(1000, 8, &mut r);
    (SequenceEncoder::new(&cfg, 6, readouts, &mut r), pins)
}

fn view(h: &(Array2<u64>, Array2<usize>, Array2<bool>)) -> HistoryView<'_> {
    HistoryView {
        pins: h.0.view(),
        actions: h.1.view(),
        mask: h.2.view(),
    }
}

const ALL: [Readout; 4] = [
    Readout::FirstK,
    Readout::MaxPool,
    Readout::Mean,
    Readout::TargetAttention,
];

fn history() -> (Array2<u64>, Array2<usize>, Array2<bool>) {
    (
        array![[11, 12, 13, 0], [21, 22, 0, 0], [0, 0, 0, 0]],
        array![[2, 3, 4, 0], [5, 2, 0, 0], [0, 0, 0, 0]],
        array![
            [true, true, true, false],
            [true, true, false, false],
            [false; 4]
        ],
    )
}

fn encode_eval(
    enc: &SequenceEncoder,
    pins: &HashEmbedding,
    h: &(Array2<u64>, Array2<usize>, Array2<bool>),
    cand: &Tensor,
) -> Tensor {
    let tape = Tape::no_grad();
    let c = pins.forward(&tape, &cand.mapv(|v| v as u64));
    let mut r = rng(0);
    let mut ctx = ForwardCtx::eval(&mut r);
    let e = enc.encode(&tape, pins, view(h), Some(c), &mut ctx);
    (*enc.read_out(&e, Some(c)).value()).clone()
}

#[test]
fn shapes_names_and_widths() {
    for fusion in [false, true] {
        let (enc, pins) = tiny(fusion, ALL.to_vec());
        assert_eq!(enc.readout_width(), 2 * 8 + 3 * 8);
        let out = encode_eval(
            &enc,
            &pins,
            &history(),
            &array![5.0_f32, 6.0, 7.0].into_dyn(),
        );
        assert_eq!(out.shape(), [3, 40]);
        assert!(out.iter().all(|v| v.is_finite()));
        // The empty history (row 2) reads out zeros everywhere.
        assert!(
            out.index_axis(ndarray::Axis(0), 2)
                .iter()
                .all(|&v| v == 0.0)
        );
        let names: Vec<_> = enc.named_params().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "action_embedding.table");
        assert!(names.contains(&"layers.1.attn.q.weight".to_string()));
        assert!(names.contains(&"final_norm.gamma".to_string()));
        assert_eq!(names.contains(&"fusion.weight".to_string()), fusion);
    }
}

#[test]
fn padding_ids_change_nothing() {
    for fusion in [false, true] {
        let (enc, pins) = tiny(fusion, ALL.to_vec());
        let cand = array![5.0_f32, 6.0, 7.0].into_dyn();
        let h = history();
        let mut h2 = h.clone();
        for ((p, a), &m) in h2.0.iter_mut().zip(h2.1.iter_mut()).zip(h.2.iter()) {
            if !m {
                *p = 987_654_321;
                *a = 5;
            }
        }
        assert_eq!(
            encode_eval(&enc, &pins, &h, &cand),
            encode_eval(&enc, &pins, &h2, &cand)
        );
        // Extra trailing padding changes nothing either.
        let wide = |x: &Array2<bool>| {
            ndarray::concatenate![ndarray::Axis(1), *x, Array2::from_elem((3, 1), false)]
        };
        let h3 = (
            ndarray::concatenate![ndarray::Axis(1), h.0, Array2::from_elem((3, 1), 4u64)],
            ndarray::concatenate![ndarray::Axis(1), h.1, Array2::from_elem((3, 1), 3usize)],
            wide(&h.2),
        );
        let (a, b) = (
            encode_eval(&enc, &pins, &h, &cand),
            encode_eval(&enc, &pins, &h3, &cand),
        );
        assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-5));
    }
}

#[test]
fn empty_and_zero_length_histories_are_finite() {
    let (enc, pins) = tiny(true, ALL.to_vec());
    let cand = array![1.0_f32, 2.0].into_dyn();
    for len in [0, 4] {
        let h = (
            Array2::zeros((2, len)),
            Array2::zeros((2, len)),
            Array2::from_elem((2, len), false),
        );
        let out = encode_eval(&enc, &pins, &h, &cand);
        assert_eq!(out.shape(), [2, enc.readout_width()]);
        assert!(out.iter().all(|&v| v == 0.0));
    }
}

#[test]
fn long_histories_keep_the_most_recent_tokens() {
    let (enc, pins) = tiny(false, vec![Readout::Mean, Readout::FirstK]);
    let cand = array![1.0_f32].into_dyn();
    let long = (
        Array2::from_shape_fn((1, 8), |(_, j)| j as u64),
        Array2::from_elem((1, 8), 2usize),
        Array2::from_elem((1, 8), true),
    );
    let short = (
        long.0.slice(s![.., ..5]).to_owned(),
        long.1.slice(s![.., ..5]).to_owned(),
        long.2.slice(s![.., ..5]).to_owned(),
    );
    assert_eq!(
        encode_eval(&enc, &pins, &long, &cand),
        encode_eval(&enc, &pins, &short, &cand)
    );
}

#[test]
fn gradient_check_through_the_encoder_and_read_outs() {
    for fusion in [false, true] {
        let (enc, _) = tiny(fusion, ALL.to_vec());
        let (_, actions, mask) = history();
        assert_gradients(&[randn(&[3, 4, 8], 3), randn(&[3, 8], 4)], move |_, v| {
            let mut r = rng(0);
            let mut ctx = ForwardCtx::eval(&mut r);
            let e = enc.encode_embedded(v[0], actions.view(), mask.view(), Some(v[1]), &mut ctx);
            enc.read_out(&e, Some(v[1]))
        });
    }
}

#[test]
fn every_parameter_gets_a_gradient() {
    let (enc, pins) = tiny(true, ALL.to_vec());
    let (p, a, m) = history();
    let tape = Tape::new();
    let c = pins.forward(&tape, &array![3u64, 4, 5].into_dyn());
    let mut r = rng(0);
    let e = enc.encode(
        &tape,
        &pins,
        view(&(p.clone(), a.clone(), m.clone())),
        Some(c),
        &mut ForwardCtx::train(&mut r),
    );
    let y = enc.read_out(&e, Some(c));
    let grads = tape.backward((y * tape.constant(randn(&y.shape(), 9))).sum());
    for (name, param) in enc.named_params() {
        let g = grads
            .param(param)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert!(
            g.to_dense().iter().any(|&v| v != 0.0),
            "zero gradient for {name}"
        );
    }
}

#[test]
fn dropout_and_time_window_only_in_training() {
    let (mut enc, pins) = tiny(false, vec![Readout::Mean, Readout::MaxPool]);
    let (p, a, m) = history();
    let run = |enc: &SequenceEncoder, train: bool, seed: u64| {
        let tape = Tape::no_grad();
        let mut r = rng(seed);
        let mut ctx = if train {
            ForwardCtx::train(&mut r)
        } else {
            ForwardCtx::eval(&mut r)
        };
        let e = enc.encode(
            &tape,
            &pins,
            view(&(p.clone(), a.clone(), m.clone())),
            None,
            &mut ctx,
        );
        ((*enc.read_out(&e, None).value()).clone(), e.mask)
    };
    assert_eq!(run(&enc, false, 1).0, run(&enc, false, 2).0);
    assert_ne!(run(&enc, true, 1).0, run(&enc, true, 2).0);
    assert_eq!(run(&enc, true, 1).0, run(&enc, true, 1).0);
    // A certain window covering the whole history empties every row in training only.
    enc.time_window = TimeWindowMask {
        probability: 1.0,
        max_window: 1,
    };
    let (_, mask) = run(&enc, true, 3);
    assert_eq!(mask.column(0).iter().filter(|&&v| v).count(), 0);
    assert_eq!(mask.slice(s![.., 1..]), m.slice(s![.., 1..]));
    assert_eq!(run(&enc, false, 3).1, m);
    enc.time_window = TimeWindowMask {
        probability: 1.0,
        max_window: 50,
    };
    let (out, mask) = run(&enc, true, 3);
    assert!(!mask.iter().any(|&v| v) && out.iter().all(|&v| v == 0.0));
}
