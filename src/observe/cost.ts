// What the routing is estimated to cost and save, from a price per decision on each route
// (TD_COST_LIGHTWEIGHT / TD_COST_HEAVYWEIGHT, any currency unit). The baseline is every decision
// at the heavyweight price: what running without the router would have cost. Figures are
// products of counts and prices (never running sums of increments), so they are exact for
// prices a binary double holds exactly and reproducible for any other.
import client from 'prom-client';

export interface Prices {
  /** Cost of one decision routed to the lightweight model. */
  lightweight: number;
  /** Cost of one decision routed to the heavyweight model; at least the lightweight price. */
  heavyweight: number;
}

export interface RouteCounts {
  lightweight: number;
  heavyweight: number;
}

export interface CostFigures {
  prices: Prices;
  lightweightSpend: number;
  heavyweightSpend: number;
  /** lightweightSpend + heavyweightSpend. */
  spend: number;
  /** Every decision at the heavyweight price. */
  allHeavyweightSpend: number;
  /** allHeavyweightSpend - spend. */
  savings: number;
  /** savings / allHeavyweightSpend; 0 when nothing was decided (or the heavyweight is free). */
  savingsShare: number;
}

export function costFigures(prices: Prices, counts: RouteCounts): CostFigures {
  const lightweightSpend = counts.lightweight * prices.lightweight;
  const heavyweightSpend = counts.heavyweight * prices.heavyweight;
  const spend = lightweightSpend + heavyweightSpend;
  const allHeavyweightSpend = (counts.lightweight + counts.heavyweight) * prices.heavyweight;
  // Computed from the lightweight decisions alone: exact where the difference of two sums is not.
  const savings = counts.lightweight * (prices.heavyweight - prices.lightweight);
  return {
    prices: { ...prices },
    lightweightSpend,
    heavyweightSpend,
    spend,
    allHeavyweightSpend,
    savings,
    savingsShare: allHeavyweightSpend > 0 ? savings / allHeavyweightSpend : 0,
  };
}

/**
 * td_estimated_cost_total{route} and td_estimated_savings_total, computed at every scrape from
 * the decision counts `counts` returns (monotonic, as counters must be: counts only grow and the
 * heavyweight price is at least the lightweight one).
 */
export function registerCostMetrics(registry: client.Registry, prices: Prices, counts: () => RouteCounts, prefix = 'td_'): void {
  const current = () => costFigures(prices, counts());
  new client.Counter({
    name: `${prefix}estimated_cost_total`,
    help: 'Estimated spend on decisions, by route: decisions times the route price (TD_COST_LIGHTWEIGHT / TD_COST_HEAVYWEIGHT).',
    labelNames: ['route'],
    registers: [registry],
    collect() {
      const f = current();
      this.reset();
      this.inc({ route: 'lightweight' }, f.lightweightSpend);
      this.inc({ route: 'heavyweight' }, f.heavyweightSpend);
    },
  });
  new client.Counter({
    name: `${prefix}estimated_savings_total`,
    help: 'Estimated savings against sending every decision to the heavyweight model.',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(current().savings);
    },
  });
}
