import { describe, expect, it } from 'vitest';
import { outcomeLabel } from '../../../src/feedback/label.js';

describe('outcomeLabel: "the lightweight model sufficed"', () => {
  it('lightweight-served: the label is ok, whatever the quality', () => {
    expect(outcomeLabel({ ok: true, served_by: 'lightweight' }, false)).toEqual({ usable: true, label: 1, servedBy: 'lightweight' });
    expect(outcomeLabel({ ok: false, served_by: 'lightweight', quality: 0.99 }, true)).toEqual({ usable: true, label: 0, servedBy: 'lightweight' });
  });

  it('heavyweight-served: the label comes from the shadow quality against the threshold', () => {
    expect(outcomeLabel({ ok: true, served_by: 'heavyweight', quality: 0.5 }, true, { qualityThreshold: 0.5 })).toMatchObject({ usable: true, label: 1 });
    expect(outcomeLabel({ ok: true, served_by: 'heavyweight', quality: 0.49 }, true, { qualityThreshold: 0.5 })).toMatchObject({ usable: true, label: 0 });
    expect(outcomeLabel({ ok: false, served_by: 'heavyweight', quality: 0.9 }, false, { qualityThreshold: 0.8 })).toMatchObject({ usable: true, label: 1 });
  });

  it('heavyweight-served without quality gives no label', () => {
    expect(outcomeLabel({ ok: true, served_by: 'heavyweight' }, true)).toEqual({ usable: false, reason: 'heavyweight_without_quality', servedBy: 'heavyweight' });
  });

  it('without served_by the route comes from the decision', () => {
    expect(outcomeLabel({ ok: false }, true)).toEqual({ usable: true, label: 0, servedBy: 'lightweight' });
    expect(outcomeLabel({ ok: true }, false)).toMatchObject({ usable: false, servedBy: 'heavyweight' });
    expect(outcomeLabel({ ok: true, quality: 0.1 }, false)).toMatchObject({ usable: true, label: 0, servedBy: 'heavyweight' });
    expect(outcomeLabel({ ok: true }, undefined)).toEqual({ usable: false, reason: 'unknown_route', servedBy: undefined });
  });
});
